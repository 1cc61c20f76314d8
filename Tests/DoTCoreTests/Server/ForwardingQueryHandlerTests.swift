import DoTCore
import DoTCoreTesting
import InMemoryLogging
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import NIOPosix
import Testing

/// The handler with scripted doubles for the transport and the cache.
@Suite struct ForwardingQueryHandlerTests {
    /// A serve-stale cache that holds one expired answer and nothing fresh.
    struct StaleOnlyCache: DNSResponseCache {
        func lookup(_ query: ParsedDNSMessage, key: DNSCacheKey, now: NIODeadline) -> ByteBuffer? { nil }
        func store(_ reply: ParsedDNSMessage, key: DNSCacheKey, now: NIODeadline) {}
        var servesStale: Bool { true }
        func lookupStale(_ query: ParsedDNSMessage, key: DNSCacheKey, now: NIODeadline) -> ByteBuffer? {
            var reply = try! DNSMessage(decoding: query.buffer)
            reply.header.isResponse = true
            reply.answers = [
                DNSResourceRecord(name: reply.questions[0].name, ttl: 30, rdata: .a(IPv4Address(192, 0, 2, 66)))
            ]
            return try! reply.encoded()
        }
    }

    /// A cache that claims a prefetch on every hit, so the refresh does not depend on the clock.
    struct AlwaysPrefetch: DNSResponseCache {
        let inner = InMemoryDNSResponseCache()
        func lookup(_ query: ParsedDNSMessage, key: DNSCacheKey, now: NIODeadline) -> ByteBuffer? {
            inner.lookup(query, key: key, now: now)
        }
        func store(_ reply: ParsedDNSMessage, key: DNSCacheKey, now: NIODeadline) {
            inner.store(reply, key: key, now: now)
        }
        func claimPrefetch(key: DNSCacheKey, now: NIODeadline) -> Bool { true }
    }

    static let client = try! SocketAddress(ipAddress: "127.0.0.1", port: 40000)

    /// A query from ``client``.
    static func clientQuery(
        _ name: DNSName = "a.test.",
        type: DNSRecordType = .a,
        id: UInt16 = 9,
        edns: EDNSRecord? = EDNSRecord(),
        clientProtocol: ClientProtocol = .udp
    ) throws -> DNSClientQuery {
        DNSClientQuery(
            message: try DNSMessage.query(name: name, type: type, id: id, edns: edns).encoded(),
            client: client,
            clientProtocol: clientProtocol
        )
    }

    func ask(_ handler: ForwardingQueryHandler, _ name: DNSName = "a.test.") async throws -> DNSMessage? {
        let query = try Self.clientQuery(name)
        return try await handler.handle(query, on: MultiThreadedEventLoopGroup.singleton.next()).get().map {
            try DNSMessage(decoding: $0)
        }
    }

    @Test func theAdmissionPolicyIsReplacedWhileServing() async throws {
        // The test client, 127.0.0.1, is outside this list.
        let handler = ForwardingQueryHandler(
            transport: ScriptedUpstreamTransport(),
            accessControl: AccessControlList(allowed: [IPNetwork("10.0.0.0/8")!])
        )
        #expect(try await ask(handler)?.header.responseCode == .refused)
        handler.updateAdmission(AdmissionPolicy(accessControl: .default))
        #expect(try await ask(handler)?.header.responseCode == .noError)
        let limiter = TokenBucketRateLimiter(configuration: .init(queriesPerSecond: 0.001, burst: 1))
        handler.updateAdmission(AdmissionPolicy(accessControl: .default, rateLimiter: limiter))
        #expect(try await ask(handler)?.header.responseCode == .noError)
        #expect(try await ask(handler)?.header.responseCode == .refused, "over the new limit")
        #expect(handler.admissionPolicy.rateLimiter as? TokenBucketRateLimiter === limiter)
        handler.updateAdmission(AdmissionPolicy(accessControl: .default, deniedAction: .drop))
        #expect(try await ask(handler)?.header.responseCode == .noError, "no limiter any more")
    }

    @Test func hitsAndLocalErrorsAreAnsweredAtOnceAndMissesLater() async throws {
        let handler = ForwardingQueryHandler(transport: ScriptedUpstreamTransport(), cache: InMemoryDNSResponseCache())
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let query = try Self.clientQuery(id: 3)
        guard case .later(let miss) = handler.respond(to: query, on: loop) else {
            Issue.record("a miss must wait for the upstream")
            return
        }
        #expect(try await miss.get() != nil)
        guard case .now(let hit?) = handler.respond(to: query, on: loop) else {
            Issue.record("a hit must be answered at once")
            return
        }
        #expect(try DNSMessage(decoding: hit).header.id == 3)
        let short = DNSClientQuery(message: ByteBuffer(bytes: [1, 2]), client: Self.client, clientProtocol: .udp)
        guard case .now(nil) = handler.respond(to: short, on: loop) else {
            Issue.record("a short packet is dropped at once")
            return
        }

        // A handler that implements only handle(_:on:) is answered through the default: later.
        struct Echo: DNSQueryHandler {
            func handle(_ query: DNSClientQuery, on eventLoop: any EventLoop) -> EventLoopFuture<ByteBuffer?> {
                eventLoop.makeSucceededFuture(query.message)
            }
        }
        guard case .later(let echoed) = Echo().respond(to: query, on: loop) else {
            Issue.record("the default answers later")
            return
        }
        #expect(try await echoed.get() == query.message)
    }

    @Test func anUpstreamFailureIsSERVFAILWithTheReasonLogged() async throws {
        let logs = InMemoryLogHandler()
        var logger = Logger(label: "test", factory: { _ in logs })
        logger.logLevel = .debug
        let upstream = ScriptedUpstreamTransport(name: "broken", behaviour: .fail(.malformedReply))
        let handler = ForwardingQueryHandler(transport: upstream, logger: logger)
        #expect(try await ask(handler)?.header.responseCode == .serverFailure)
        let failure = try #require(logs.entries.first { $0.message == "upstream failure" })
        let error = "\(failure.metadata["error"] ?? "")"
        #expect(error.contains("malformed reply") && error.contains("broken"), "\(error)")
    }

    @Test func aFailedUpstreamIsAnsweredFromAStaleEntry() async throws {
        let recorded = RecordedMetrics()
        let handler = ForwardingQueryHandler(
            transport: ScriptedUpstreamTransport(behaviour: .fail(.connectionRefused)),
            cache: StaleOnlyCache(),
            metrics: recorded.metrics
        )
        let reply = try #require(try await ask(handler))
        #expect(reply.header.id == 9 && reply.answers.first?.rdata == .a(IPv4Address(192, 0, 2, 66)))
        #expect(recorded.replies(.serverFailure) == 0 && recorded.count(DNSProxyMetrics.Name.cacheStaleAnswers) == 1)
    }

    @Test func aSlowUpstreamIsAnsweredStaleAfterTheClientTimer() throws {
        // On an embedded loop the timer fires when the test advances time, never on its own.
        let loop = EmbeddedEventLoop()
        let handler = ForwardingQueryHandler(
            transport: ScriptedUpstreamTransport(behaviour: .silence),
            cache: StaleOnlyCache(),
            staleReplyDelay: .milliseconds(50),
            queryTimeout: .seconds(2)
        )
        let query = try Self.clientQuery()
        guard case .later(let reply) = handler.respond(to: query, on: loop) else {
            Issue.record("a miss must wait")
            return
        }
        let answer = NIOLockedValueBox<ByteBuffer??>(nil)
        reply.whenSuccess { reply in answer.withLockedValue { $0 = reply } }
        loop.advanceTime(by: .milliseconds(49))
        #expect(answer.withLockedValue { $0 } == nil, "the client timer has not run out")
        loop.advanceTime(by: .milliseconds(1))
        let stale = try #require(
            answer.withLockedValue { $0 }.flatMap { $0 },
            "answered stale when the client timer ran out"
        )
        #expect(try DNSMessage(decoding: stale).answers.first?.rdata == .a(IPv4Address(192, 0, 2, 66)))
    }

    @Test func withoutStaleDataAFailureIsSERVFAIL() async throws {
        let recorded = RecordedMetrics()
        let handler = ForwardingQueryHandler(
            transport: ScriptedUpstreamTransport(behaviour: .fail(.connectionRefused)),
            metrics: recorded.metrics
        )
        #expect(try await ask(handler)?.header.responseCode == .serverFailure)
        #expect(recorded.replies(.serverFailure) == 1)
    }

    @Test func whenEveryUpstreamIsDownClientsGetSERVFAILOrStaleWithoutAnythingSent() async throws {
        let upstream = ScriptedUpstreamTransport(behaviour: .fail(.connectionRefused))
        let pool = UpstreamPool(
            members: [.init(name: "u", transport: upstream)],
            configuration: .init(maximumFailures: 1, initialProbeDelay: .hours(1), recoveryQueryInterval: nil),
            healthEventLoop: MultiThreadedEventLoopGroup.singleton.next()
        )
        defer { pool.stopHealthChecks() }
        let recorded = RecordedMetrics()
        let handler = ForwardingQueryHandler(transport: pool, queryTimeout: .seconds(30), metrics: recorded.metrics)
        #expect(try await ask(handler)?.header.responseCode == .serverFailure)
        #expect(!pool.hasUsableUpstream && upstream.queryCount == 1)
        // Down: SERVFAIL without waiting on the upstream (nothing is sent) ...
        #expect(try await ask(handler)?.header.responseCode == .serverFailure)
        // ... or the stale answer when serve-stale is on.
        let stale = ForwardingQueryHandler(transport: pool, cache: StaleOnlyCache(), queryTimeout: .seconds(30))
        #expect(try await ask(stale)?.answers.first?.rdata == .a(IPv4Address(192, 0, 2, 66)))
        #expect(upstream.queryCount == 1 && recorded.replies(.serverFailure) == 2)
    }

    @Test func prefetchRefreshesAnEntryInTheBackgroundOnce() async throws {
        let transport = ScriptedUpstreamTransport()
        let recorded = RecordedMetrics()
        let handler = ForwardingQueryHandler(transport: transport, cache: AlwaysPrefetch(), metrics: recorded.metrics)
        _ = try await ask(handler)  // miss: goes upstream
        _ = try await ask(handler)  // hit: answered from cache, and a refresh goes upstream
        #expect(transport.queryCount == 2)
        #expect(recorded.count(DNSProxyMetrics.Name.cachePrefetches) == 1)
    }

    /// Holds every query until `release()`, as a slow upstream does.
    final class HeldTransport: UpstreamTransport {
        private let held = NIOLockedValueBox(
            [(query: ParsedDNSMessage, completion: @Sendable (Result<ParsedDNSMessage, UpstreamError>) -> Void)]()
        )

        var count: Int { held.withLockedValue { $0.count } }

        func send(
            _ query: ParsedDNSMessage,
            deadline: NIODeadline,
            on eventLoop: any EventLoop,
            completion: @escaping @Sendable (Result<ParsedDNSMessage, UpstreamError>) -> Void
        ) {
            held.withLockedValue { $0.append((query, completion)) }
        }

        /// Answers every held query.
        func release() throws {
            let waiting = held.withLockedValue { held in
                defer { held.removeAll() }
                return held
            }
            for (query, completion) in waiting {
                completion(
                    .success(try ParsedDNSMessage(TestDoTServer.answer(DNSMessage(decoding: query.buffer)).encoded()))
                )
            }
        }
    }

    /// Sends a query that is a slice of `readBuffer`, as the UDP listener delivers it. Nothing of the
    /// query outlives this call but what the handler kept.
    func respondToSlice(
        _ handler: ForwardingQueryHandler,
        of readBuffer: ByteBuffer,
        length: Int,
        on loop: any EventLoop
    ) -> DNSQueryResponse {
        let query = DNSClientQuery(
            message: readBuffer.getSlice(at: 0, length: length)!,
            client: Self.client,
            clientProtocol: .udp
        )
        return handler.respond(to: query, on: loop)
    }

    /// Whether `buffer`'s storage is shared: a write to shared storage copies it first.
    func isShared(_ buffer: inout ByteBuffer) -> Bool {
        let before = buffer.withUnsafeReadableBytes { UInt(bitPattern: $0.baseAddress) }
        buffer.setInteger(UInt8(0), at: buffer.writerIndex - 1)
        return before != buffer.withUnsafeReadableBytes { UInt(bitPattern: $0.baseAddress) }
    }

    @Test func queriesWaitingForTheUpstreamDoNotKeepTheBufferTheyWereReadInto() async throws {
        let transport = HeldTransport()
        // A promise left unfulfilled traps in debug builds; answer whatever a failed check left held.
        defer { try? transport.release() }
        let handler = ForwardingQueryHandler(transport: transport, cache: AlwaysPrefetch())
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let query = try DNSMessage.query(name: "a.test.", type: .a, id: 9).encoded()
        // A read buffer with room for many datagrams, the query at its start.
        var readBuffer = ByteBuffer(repeating: 0, count: 32 * 1024)
        readBuffer.setBuffer(query, at: 0)

        // A miss waits for the upstream.
        guard case .later(let reply) = respondToSlice(handler, of: readBuffer, length: query.readableBytes, on: loop)
        else {
            Issue.record("a miss must wait for the upstream")
            return
        }
        #expect(transport.count == 1 && !isShared(&readBuffer), "a miss keeps a copy of its query, not the read buffer")
        try transport.release()
        #expect(try await reply.get() != nil, "the miss is answered, and its reply cached before that")

        // A hit answers at once; its prefetch refresh waits for the upstream.
        readBuffer.setBuffer(query, at: 0)
        guard case .now(.some) = respondToSlice(handler, of: readBuffer, length: query.readableBytes, on: loop) else {
            Issue.record("a hit must be answered at once")
            return
        }
        #expect(
            transport.count == 1 && !isShared(&readBuffer),
            "a refresh keeps a copy of its query, not the read buffer"
        )
    }

    @Test func deniedClientsCanBeDropped() async throws {
        let recorded = RecordedMetrics()
        let handler = ForwardingQueryHandler(
            transport: ScriptedUpstreamTransport(),
            accessControl: AccessControlList(allowed: [IPNetwork("10.0.0.0/8")!]),
            deniedAction: .drop,
            metrics: recorded.metrics
        )
        #expect(try await ask(handler) == nil)
        #expect(recorded.count(DNSProxyMetrics.Name.accessDenied) == 1)
    }

    @Test func slippedQueriesGetAnEmptyTruncatedReply() async throws {
        let limiter = TokenBucketRateLimiter(
            configuration: .init(queriesPerSecond: 0.001, burst: 1, action: .slip, slipInterval: 1)
        )
        let handler = ForwardingQueryHandler(transport: ScriptedUpstreamTransport(), rateLimiter: limiter)
        #expect(try await ask(handler)?.answers.count == 1)
        let slipped = try #require(try await ask(handler))
        #expect(slipped.header.isTruncated && slipped.answers.isEmpty && slipped.header.id == 9)
    }

    @Test func anUnknownEDNSVersionIsAnsweredBADVERSWithVersionZeroAndNothingSent() async throws {
        let upstream = ScriptedUpstreamTransport()
        let recorded = RecordedMetrics()
        let handler = ForwardingQueryHandler(transport: upstream, metrics: recorded.metrics)
        let query = try DNSMessage.query(name: "a.test.", type: .a, id: 5, edns: EDNSRecord(version: 1, dnssecOK: true))
            .encoded()
        let reply = try DNSMessage(
            decoding: try #require(
                try await handler.handle(
                    DNSClientQuery(message: query, client: Self.client, clientProtocol: .udp),
                    on: MultiThreadedEventLoopGroup.singleton.next()
                ).get()
            )
        )
        #expect(reply.header.responseCode == .badVersion)
        #expect(reply.header.id == 5 && reply.questions.first?.name == "a.test." && reply.answers.isEmpty)
        #expect(reply.edns?.version == 0 && reply.edns?.dnssecOK == true)
        #expect(upstream.queryCount == 0 && recorded.replies(.badVersion) == 1)
        // Version 0 is forwarded as usual.
        #expect(try await ask(handler)?.header.responseCode == .noError)
        #expect(upstream.queryCount == 1)
    }
}

/// TTLs and reply sizes the handler enforces on upstream answers, whatever the upstream sent.
@Suite struct UpstreamAnswerPolicyTests {
    /// Answers every query with the records `answers` builds for its name.
    struct FixedAnswers: UpstreamTransport {
        let answers: @Sendable (DNSName) -> [DNSResourceRecord]
        func send(
            _ query: ParsedDNSMessage,
            deadline: NIODeadline,
            on eventLoop: any EventLoop,
            completion: @escaping @Sendable (Result<ParsedDNSMessage, UpstreamError>) -> Void
        ) {
            let message = try! DNSMessage(decoding: query.buffer)
            var reply = DNSMessage(header: message.header, questions: message.questions, edns: message.edns)
            reply.header.isResponse = true
            reply.answers = answers(message.questions[0].name)
            completion(.success(try! ParsedDNSMessage(reply.encoded())))
        }
    }

    func ask(
        _ handler: ForwardingQueryHandler,
        _ name: DNSName,
        type: DNSRecordType = .a,
        clientProtocol: ClientProtocol = .udp,
        udpSize: UInt16 = 4096
    ) async throws -> DNSMessage {
        var edns = EDNSRecord()
        edns.udpPayloadSize = udpSize
        let query = try ForwardingQueryHandlerTests.clientQuery(
            name,
            type: type,
            edns: edns,
            clientProtocol: clientProtocol
        )
        let reply = try await handler.handle(query, on: MultiThreadedEventLoopGroup.singleton.next()).get()
        return try DNSMessage(decoding: try #require(reply))
    }

    @Test func aTTLWithTheTopBitSetIsZeroAndIsNotCached() async throws {
        let upstream = FixedAnswers { name in
            [DNSResourceRecord(name: name, ttl: 0xFFFF_FFF0, rdata: .a(IPv4Address(192, 0, 2, 7)))]
        }
        let cache = InMemoryDNSResponseCache()
        let handler = ForwardingQueryHandler(transport: upstream, cache: cache)
        let reply = try await ask(handler, "top.test.")
        #expect(reply.answers.map(\.ttl) == [0])
        #expect(cache.count == 0)
    }

    @Test func theCacheTTLCeilingAppliesToTheFirstAnswerToo() async throws {
        let upstream = FixedAnswers { name in
            [
                DNSResourceRecord(name: name, ttl: 86_400, rdata: .a(IPv4Address(192, 0, 2, 8))),
                DNSResourceRecord(name: name, ttl: 7_200, rdata: .a(IPv4Address(192, 0, 2, 9))),
            ]
        }
        let cache = InMemoryDNSResponseCache(configuration: .init(maximumTTL: 3_600))
        let handler = ForwardingQueryHandler(transport: upstream, cache: cache)
        let first = try await ask(handler, "long.test.")
        #expect(first.answers.map(\.ttl) == [3_600, 3_600])
        // The hit says the same, aged by the time it spent in the cache (the real clock: a busy
        // machine can take seconds between the two queries).
        let hit = try await ask(handler, "long.test.")
        #expect(hit.answers.count == 2 && hit.answers.allSatisfy { $0.ttl <= 3_600 && $0.ttl > 3_000 })
        // Without a cache nothing is lowered, but the top bit still counts as 0.
        let uncached = ForwardingQueryHandler(transport: upstream)
        #expect(try await ask(uncached, "long.test.").answers.map(\.ttl) == [86_400, 7_200])
    }

    /// Six 250-octet strings: a reply of about 1,550 octets.
    static let bigAnswer = FixedAnswers { name in
        [
            DNSResourceRecord(
                name: name,
                ttl: 300,
                rdata: .txt(Array(repeating: Array(repeating: UInt8(ascii: "x"), count: 250), count: 6))
            )
        ]
    }

    @Test(arguments: [
        (
            UpstreamError.Code.certificateRejected, ExtendedDNSError.InfoCode.networkError,
            "certificate rejected: scripted failure"
        ),
        (.connectionRefused, .networkError, "connection refused"),
        (.timeout, .noReachableAuthority, "did not answer in time"),
    ])
    func servfailSaysWhyInAnExtendedDNSError(
        failure: UpstreamError.Code,
        code: ExtendedDNSError.InfoCode,
        text: String
    ) async throws {
        let handler = ForwardingQueryHandler(transport: ScriptedUpstreamTransport(behaviour: .fail(failure)))
        let reply = try await ask(handler, "a.test.")
        #expect(reply.header.responseCode == .serverFailure)
        let option = try #require(reply.edns?.option(.extendedError))
        let error = try #require(ExtendedDNSError(option))
        #expect(error.code == code && error.text.contains(text), "\(error)")
        #expect(!error.text.contains("scripted:"), "the upstream's name stays out of the client's reply")
    }

    @Test func everyUpstreamDownIsNoReachableAuthorityAndClientsWithoutEDNSGetNoOPT() async throws {
        let upstream = ScriptedUpstreamTransport(behaviour: .fail(.connectionRefused))
        let pool = UpstreamPool(
            members: [.init(name: "u", transport: upstream)],
            configuration: .init(maximumFailures: 1, recoveryQueryInterval: nil),
            healthEventLoop: MultiThreadedEventLoopGroup.singleton.next()
        )
        defer { pool.stopHealthChecks() }
        let handler = ForwardingQueryHandler(transport: pool)
        _ = try await ask(handler, "a.test.")
        let down = try await ask(handler, "b.test.")
        #expect(try #require(down.edns?.option(.extendedError)).data.prefix(2) == [0, 22])
        let plain = try ForwardingQueryHandlerTests.clientQuery("c.test.", id: 4, edns: nil)
        let reply = try DNSMessage(
            decoding: try #require(
                try await handler.handle(plain, on: MultiThreadedEventLoopGroup.singleton.next()).get()
            )
        )
        #expect(reply.header.responseCode == .serverFailure && reply.edns == nil)
    }

    @Test func anExtendedDNSErrorRoundTripsAndItsTextIsBounded() throws {
        let long = ExtendedDNSError(code: .networkError, text: String(repeating: "é", count: 200))
        #expect(long.text.utf8.count <= ExtendedDNSError.maximumTextLength && long.text.hasPrefix("éé"))
        #expect(ExtendedDNSError(long.option) == long)
        #expect(ExtendedDNSError(EDNSOption(code: .extendedError, data: [0])) == nil)
        #expect(ExtendedDNSError.InfoCode(rawValue: 99).description == "EDE99")
    }

    @Test func udpRepliesAreCappedAt1232OctetsWhateverTheClientAsks() async throws {
        let recorded = RecordedMetrics()
        let handler = ForwardingQueryHandler(
            transport: Self.bigAnswer,
            cache: InMemoryDNSResponseCache(),
            metrics: recorded.metrics
        )
        // A miss, then a hit: both truncated for a client that asked for 4,096.
        for _ in 0..<2 {
            let reply = try await ask(handler, "big.test.", type: .txt, udpSize: 4096)
            #expect(reply.header.isTruncated && reply.answers.isEmpty && reply.edns != nil)
        }
        // Whole over TCP.
        let tcp = try await ask(handler, "big.test.", type: .txt, clientProtocol: .tcp)
        #expect(!tcp.header.isTruncated && tcp.answers.count == 1)
        #expect(recorded.count(DNSProxyMetrics.Name.truncated) == 2)
        // A larger cap, configured, lets it through over UDP.
        let generous = ForwardingQueryHandler(transport: Self.bigAnswer, maximumUDPReplySize: 4096)
        #expect(try await ask(generous, "big.test.", type: .txt).answers.count == 1)
        // The client's own smaller size still wins.
        #expect(try await ask(generous, "big.test.", type: .txt, udpSize: 1400).header.isTruncated)
    }
}
