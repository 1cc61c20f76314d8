import DoTCore
import DoTCoreTesting
import Logging
import MetricsTestKit
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing

@testable import DoTRedisCache

/// The two-tier cache against a real redis-server: replicas share answers, ages stay right, and a
/// Redis that is down, paused or restarted costs at most its deadline.
@Suite(.serialized) struct TieredCacheRedisTests {
    /// One replica: its own loop, memory tier and Redis client.
    struct Replica {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let test = TestMetrics()
        /// The breaker's clock: real time plus what the test has skipped ahead.
        let skipped = NIOLockedValueBox(TimeAmount.zero)
        let client: RedisClient
        let cache: TieredDNSResponseCache

        init(
            port: Int,
            memory: InMemoryDNSResponseCache.Configuration = .init(),
            tlsContext: TLSClientContext? = nil,
            tune: (inout RedisClient.Configuration) -> Void = { _ in }
        ) throws {
            var configuration = RedisClient.Configuration(endpoint: try RedisEndpoint(url: "redis://127.0.0.1:\(port)"))
            configuration.timeout = .milliseconds(200)  // generous: the test machine is shared
            tune(&configuration)
            let metrics = RedisCacheMetrics(factory: test)
            let skipped = self.skipped
            client = try RedisClient(
                configuration: configuration,
                eventLoopGroup: group,
                tlsContext: tlsContext,
                metrics: metrics,
                logger: Logger(label: "test"),
                clock: { .now() + skipped.withLockedValue { $0 } }
            )
            cache = TieredDNSResponseCache(
                memory: InMemoryDNSResponseCache(configuration: memory),
                redis: client,
                metrics: metrics
            )
        }

        var loop: any EventLoop { group.next() }

        func lookups(_ result: String) -> Int64 {
            (try? test.expectCounter("dotproxy_redis_lookups_total", [("result", result)]).totalValue) ?? 0
        }

        func command(_ words: String...) async throws -> [RESPValue] {
            try await client.execute([words.map { Array($0.utf8) }], purpose: .store, on: loop).get()
        }

        /// Waits for the connection, attempt by attempt (a few may fail while Redis starts again).
        func waitUntilConnected() async throws {
            for _ in 0..<20 where (try? await client.nextConnection(on: loop).get()) != nil { return }
            Issue.record("never connected to Redis")
        }

        /// Moves the breaker's clock past any back-off.
        func skipPastBackoff() { skipped.withLockedValue { $0 = $0 + .hours(1) } }

        /// Fetches `query` into the memory tier, then looks it up there.
        func fetch(_ query: ParsedDNSMessage) async throws -> DNSMessage? {
            let key = try #require(DNSCacheKey(query))
            try await cache.fetch(query, key: key, on: loop)?.get()
            return try cache.lookup(query, key: key, now: .now()).map { try DNSMessage(decoding: $0) }
        }

        func shutdown() { try? group.syncShutdownGracefully() }
    }

    static func query(_ name: DNSName, _ type: DNSRecordType = .a, id: UInt16 = 7) throws -> ParsedDNSMessage {
        try ParsedDNSMessage(try DNSMessage.query(name: name, type: type, id: id, edns: EDNSRecord()).encoded())
    }

    static func reply(to query: ParsedDNSMessage, ttl: UInt32 = 60, nxdomain: Bool = false) throws -> ParsedDNSMessage {
        var reply = try DNSMessage(decoding: query.buffer)
        reply.header.isResponse = true
        if nxdomain {
            reply.header.responseCode = .nameError
            reply.authorities = [
                DNSResourceRecord(
                    name: "test.",
                    ttl: ttl,
                    rdata: .soa(
                        DNSRData.SOA(
                            primaryNameServer: "ns.test.",
                            responsibleMailbox: "h.test.",
                            serial: 1,
                            refresh: 1,
                            retry: 1,
                            expire: 1,
                            minimum: ttl
                        )
                    )
                )
            ]
        } else {
            reply.answers = [
                DNSResourceRecord(name: reply.questions[0].name, ttl: ttl, rdata: .a(IPv4Address(192, 0, 2, 1)))
            ]
        }
        return try ParsedDNSMessage(try reply.encoded())
    }

    /// Stores `reply` through `replica` as an upstream reply, and checks Redis has it: the `SET` and
    /// the `EXISTS` after it go out in order on the replica's one connection.
    func store(_ reply: ParsedDNSMessage, for query: ParsedDNSMessage, through replica: Replica) async throws {
        replica.cache.store(reply, key: try #require(DNSCacheKey(query)), now: .now())
        let key = String(decoding: try #require(RedisCacheKey.make(prefix: "dotproxy:", for: query)), as: UTF8.self)
        #expect(try await replica.command("EXISTS", key) == [.integer(1)])
    }

    @Test func aReplicaAnswersWhatAnotherStoredWithTheTTLAgedByRedisClock() async throws {
        let redis = try RedisServerProcess()
        defer { redis.stop() }
        let (one, two) = (try Replica(port: redis.port), try Replica(port: redis.port))
        defer {
            one.shutdown()
            two.shutdown()
        }
        try await one.waitUntilConnected()
        try await two.waitUntilConnected()

        let query = try Self.query("Shared.Test.")
        try await store(try Self.reply(to: query, ttl: 60), for: query, through: one)
        // Ten seconds pass in Redis: its TTL left is what the second replica ages by.
        _ = try await one.command("PEXPIRE", "dotproxy:v1:shared.test.:1:1:", "50000")
        let answer = try #require(try await two.fetch(try Self.query("shared.test.", id: 99)))
        #expect(answer.header.id == 99)
        // 49 when a second of the real clock passes between PEXPIRE and the lookup (a loaded host, a
        // sanitizer build): the age is Redis's, whole seconds, never the stored TTL of 60.
        #expect((49...50).contains(answer.answers.first?.ttl ?? 0))
        #expect(two.lookups("hit") == 1)

        // A negative answer is shared the same way.
        let missing = try Self.query("missing.test.")
        try await store(try Self.reply(to: missing, ttl: 30, nxdomain: true), for: missing, through: one)
        let negative = try #require(try await two.fetch(missing))
        #expect(negative.header.responseCode == .nameError)
        #expect(two.lookups("hit") == 2)

        // A name nobody stored is a miss; another DNSSEC bit is another entry.
        #expect(try await two.fetch(try Self.query("other.test.")) == nil)
        var secure = DNSMessage.query(name: "shared.test.", type: .a, id: 1, edns: EDNSRecord(dnssecOK: true))
        secure.header.checkingDisabled = false
        #expect(try await two.fetch(try ParsedDNSMessage(try secure.encoded())) == nil)
        #expect(two.lookups("miss") == 2)
    }

    @Test func anExpiredEntryIsServedStaleByAnotherReplicaOnlyAfterAnUpstreamFailure() async throws {
        let redis = try RedisServerProcess()
        defer { redis.stop() }
        let stale = InMemoryDNSResponseCache.Configuration(serveStale: true, staleWindow: 3600)
        let (one, two) = (try Replica(port: redis.port, memory: stale), try Replica(port: redis.port, memory: stale))
        defer {
            one.shutdown()
            two.shutdown()
        }
        try await one.waitUntilConnected()
        try await two.waitUntilConnected()
        let query = try Self.query("old.test.")
        try await store(try Self.reply(to: query, ttl: 60), for: query, through: one)
        let ttl = try await one.command("PTTL", "dotproxy:v1:old.test.:1:1:")
        guard case .integer(let left) = ttl.first else { throw RedisError(.protocolError) }
        #expect(left > 3_600_000 && left <= 3_660_000)  // lifetime plus the stale window
        _ = try await one.command("PEXPIRE", "dotproxy:v1:old.test.:1:1:", "1800000")  // 30 min old
        #expect(try await two.fetch(query) == nil)
        #expect(two.lookups("stale") == 1)
        let key = try #require(DNSCacheKey(query))
        let served = try #require(two.cache.lookupStale(query, key: key, now: .now()))
        #expect(try DNSMessage(decoding: served).answers.first?.ttl == InMemoryDNSResponseCache.staleTTL)
    }

    @Test func aRedisThatIsDownPausedOrRestartedCostsAtMostTheDeadline() async throws {
        let redis = try RedisServerProcess()
        defer { redis.stop() }
        let replica = try Replica(port: redis.port) { configuration in
            configuration.timeout = .milliseconds(50)
            configuration.failureThreshold = 3
            // Three lookups one after the other, each failing at its 50 ms deadline or later: the third
            // fails at least 100 ms after the first.
            configuration.failureSpan = .milliseconds(50)
            configuration.reconnectBackoff = (.milliseconds(20), .milliseconds(100))
            // Open for longer than any pause between two steps of the test on a loaded host; the test
            // moves the breaker's clock past it (`skipPastBackoff`) instead of waiting.
            configuration.breakerBackoff = (.seconds(60), .seconds(120))
        }
        defer { replica.shutdown() }
        try await replica.waitUntilConnected()
        let query = try Self.query("fault.test.")
        try await store(try Self.reply(to: query, ttl: 300), for: query, through: replica)
        let fresh = try Replica(port: redis.port)
        defer { fresh.shutdown() }
        try await fresh.waitUntilConnected()

        // Paused: each lookup ends at its deadline, then the breaker skips Redis without waiting.
        redis.signal(SIGSTOP)
        for _ in 0..<3 { #expect(try await replica.fetch(try Self.query("paused.test.")) == nil) }
        #expect(replica.lookups("timeout") == 3)
        #expect(try await replica.fetch(try Self.query("paused.test.")) == nil)
        #expect(replica.lookups("skipped") == 1 && replica.lookups("timeout") == 3)
        #expect((try? replica.test.expectMeter("dotproxy_redis_breaker_open").lastValue) == 1)
        redis.signal(SIGCONT)

        // Resumed: past the back-off (the breaker's clock moved, not waited for) a probe closes the
        // breaker, and answers come from Redis again. (A name this replica did not store: its memory
        // tier cannot answer it. A probe that loses the race with the backlog is retried.)
        let elsewhere = try Self.query("elsewhere.test.")
        try await store(try Self.reply(to: elsewhere, ttl: 300), for: elsewhere, through: fresh)
        var recovered = false
        for _ in 0..<5 where !recovered {
            replica.skipPastBackoff()
            recovered = try await replica.fetch(elsewhere) != nil
        }
        #expect(recovered && replica.lookups("hit") == 1)
        #expect((try? replica.test.expectMeter("dotproxy_redis_breaker_open").lastValue) == 0)

        // Killed: a lookup is a counted failure, not a hang; restarted: the connections come back by
        // themselves, and what is stored again is found.
        redis.stop()
        #expect(try await fresh.fetch(query) == nil)
        #expect(fresh.lookups("error") + fresh.lookups("skipped") + fresh.lookups("timeout") == 1)
        try redis.restart()
        try await replica.waitUntilConnected()
        try await store(try Self.reply(to: query, ttl: 300), for: query, through: replica)
        try await fresh.waitUntilConnected()
        #expect(try await fresh.fetch(try Self.query("fault.test.", id: 4)) != nil)
        #expect(fresh.lookups("hit") == 1)
    }

    @Test func redissVerifiesTheServerCertificateByName() async throws {
        let redis = try RedisServerProcess(
            tls: (TestCertificates.server.certificateFile, TestCertificates.server.keyFile)
        )
        defer { redis.stop() }
        let context = try TLSClientContext(configuration: TestCertificates.clientConfiguration())
        let good = try Replica(port: redis.port, tlsContext: context) {
            $0.endpoint = try! RedisEndpoint(url: "rediss://127.0.0.1:\(redis.port)")
        }
        defer { good.shutdown() }
        try await good.waitUntilConnected()
        let query = try Self.query("tls.test.")
        try await store(try Self.reply(to: query), for: query, through: good)

        // "localhost" is not on the certificate (dns.test, 127.0.0.1, ::1): never connected.
        let wrong = try Replica(port: redis.port, tlsContext: context) {
            $0.endpoint = try! RedisEndpoint(url: "rediss://localhost:\(redis.port)")
        }
        defer { wrong.shutdown() }
        await #expect(throws: (any Error).self) { try await wrong.client.nextConnection(on: wrong.loop).get() }
        #expect((try? await wrong.command("PING")) == nil)
        #expect(try await wrong.fetch(query) == nil)
        #expect(
            (try? wrong.test.expectCounter("dotproxy_redis_connects_total", [("result", "failed")]).totalValue) ?? 0 > 0
        )
        #expect(throws: RedisError.self) {
            try RedisClient(
                configuration: .init(endpoint: try RedisEndpoint(url: "rediss://127.0.0.1:1")),
                eventLoopGroup: good.group
            )
        }
    }

    @Test func aPasswordLogsInAndAWrongOneIsRefusedWithoutBeingShown() async throws {
        let redis = try RedisServerProcess(["--requirepass", "s3cret-pw"])
        defer { redis.stop() }
        let good = try Replica(port: redis.port) {
            $0.endpoint = try! RedisEndpoint(url: "redis://:s3cret-pw@127.0.0.1:\(redis.port)/3")
        }
        defer { good.shutdown() }
        try await good.waitUntilConnected()
        guard case .bulkString(let info) = try await good.command("CLIENT", "INFO").first else {
            throw RedisError(.protocolError, "CLIENT INFO")
        }
        #expect(String(buffer: info).contains("db=3"))
        let bad = try Replica(port: redis.port) {
            $0.endpoint = try! RedisEndpoint(url: "redis://:wrong-pw@127.0.0.1:\(redis.port)")
        }
        defer { bad.shutdown() }
        await #expect {
            try await bad.client.nextConnection(on: bad.loop).get()
        } throws: { error in
            (error as? RedisError)?.code == .serverError && !"\(error)".contains("wrong-pw")
        }
        #expect((try? await bad.command("PING")) == nil)
        #expect(
            (try? bad.test.expectCounter("dotproxy_redis_connects_total", [("result", "failed")]).totalValue) ?? 0 > 0
        )
        #expect(!bad.client.configuration.endpoint.description.contains("wrong-pw"))
    }
}
