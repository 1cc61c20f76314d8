import DoTCore
import NIOCore
import Testing

/// The cache with explicit instants: no clock, no sleeping.
@Suite struct InMemoryDNSResponseCacheTests {
    static let start = NIODeadline.uptimeNanoseconds(5_000_000_000)
    static func at(seconds: Int64) -> NIODeadline { start + .seconds(seconds) }

    static func query(
        _ name: DNSName,
        type: DNSRecordType = .a,
        id: UInt16 = 1,
        dnssecOK: Bool = false,
        cd: Bool = false,
        edns: Bool = true
    ) -> ByteBuffer {
        var message = DNSMessage.query(
            name: name,
            type: type,
            id: id,
            edns: edns ? EDNSRecord(dnssecOK: dnssecOK) : nil
        )
        message.header.checkingDisabled = cd
        return try! message.encoded()
    }

    static func reply(
        to query: ByteBuffer,
        rcode: DNSResponseCode = .noError,
        answers: [DNSResourceRecord] = [],
        authorities: [DNSResourceRecord] = [],
        truncated: Bool = false
    ) -> ByteBuffer {
        var message = try! DNSMessage(decoding: query)
        message.header.isResponse = true
        message.header.recursionAvailable = true
        message.header.responseCode = rcode
        message.header.isTruncated = truncated
        message.answers = answers
        message.authorities = authorities
        message.edns = EDNSRecord(udpPayloadSize: 1232, options: [.padding(length: 20)])
        return try! message.encoded()
    }

    static func a(_ name: DNSName, ttl: UInt32) -> DNSResourceRecord {
        DNSResourceRecord(name: name, ttl: ttl, rdata: .a(IPv4Address(192, 0, 2, 1)))
    }

    static func soa(ttl: UInt32, minimum: UInt32) -> DNSResourceRecord {
        DNSResourceRecord(
            name: "test.",
            ttl: ttl,
            rdata: .soa(
                .init(
                    primaryNameServer: "ns.test.",
                    responsibleMailbox: "hostmaster.test.",
                    serial: 1,
                    refresh: 3600,
                    retry: 600,
                    expire: 86400,
                    minimum: minimum
                )
            )
        )
    }

    func store(_ cache: InMemoryDNSResponseCache, _ query: ByteBuffer, _ reply: ByteBuffer, at seconds: Int64 = 0) {
        cache.store(reply, for: query, now: Self.at(seconds: seconds))
    }

    func lookup(_ cache: InMemoryDNSResponseCache, _ query: ByteBuffer, at seconds: Int64) -> DNSMessage? {
        cache.lookup(query, now: Self.at(seconds: seconds)).map {
            try! DNSMessage(decoding: $0)
        }
    }

    @Test func aHitHasTheClientsIDAndCaseAndAgedTTLs() throws {
        let cache = InMemoryDNSResponseCache()
        let first = Self.query("www.test.", id: 10)
        store(
            cache,
            first,
            Self.reply(to: first, answers: [Self.a("www.test.", ttl: 300), Self.a("www.test.", ttl: 200)])
        )
        let second = Self.query("WwW.TeSt.", id: 0xBEEF)
        let hit = try #require(lookup(cache, second, at: 100))
        #expect(hit.header.id == 0xBEEF && hit.header.isResponse)
        #expect(hit.questions.first?.name.description == "WwW.TeSt.")
        // The entry lives for the smallest answer TTL (200 s); larger record TTLs are lowered to it.
        #expect(hit.answers.map(\.ttl) == [100, 100])
        #expect(hit.edns == EDNSRecord(udpPayloadSize: 1232), "the client's OPT, not the upstream's (padding gone)")
        // A client without EDNS gets no OPT.
        #expect(lookup(cache, Self.query("www.test.", edns: false), at: 100)?.edns == nil)
        // Expired after the smallest answer TTL.
        #expect(lookup(cache, second, at: 200) == nil)
        #expect(cache.count == 0, "the expired entry is gone")
    }

    @Test func ttlsAreClampedToTheConfiguredRange() throws {
        let floor = InMemoryDNSResponseCache(configuration: .init(minimumTTL: 600))
        let query = Self.query("short.test.")
        store(floor, query, Self.reply(to: query, answers: [Self.a("short.test.", ttl: 30)]))
        #expect(lookup(floor, query, at: 500)?.answers.first?.ttl == 0, "kept for 600 s, record TTL ages to 0")
        #expect(lookup(floor, query, at: 600) == nil)

        let ceiling = InMemoryDNSResponseCache(configuration: .init(maximumTTL: 60))
        store(ceiling, query, Self.reply(to: query, answers: [Self.a("short.test.", ttl: 86_400)]))
        #expect(lookup(ceiling, query, at: 0)?.answers.first?.ttl == 60, "record TTL lowered to the entry's lifetime")
        #expect(lookup(ceiling, query, at: 60) == nil)
    }

    @Test func negativeRepliesLiveForTheSOAMinimum() throws {
        let cache = InMemoryDNSResponseCache(configuration: .init(maximumNegativeTTL: 3600))
        let nx = Self.query("nope.test.")
        store(cache, nx, Self.reply(to: nx, rcode: .nameError, authorities: [Self.soa(ttl: 900, minimum: 120)]))
        #expect(lookup(cache, nx, at: 119)?.header.responseCode == .nameError)
        #expect(lookup(cache, nx, at: 120) == nil)

        let nodata = Self.query("a.test.", type: .mx)
        store(cache, nodata, Self.reply(to: nodata, authorities: [Self.soa(ttl: 60, minimum: 300)]))
        #expect(lookup(cache, nodata, at: 59)?.answers.isEmpty == true)
        #expect(lookup(cache, nodata, at: 60) == nil)

        let capped = InMemoryDNSResponseCache(configuration: .init(maximumNegativeTTL: 30))
        store(capped, nx, Self.reply(to: nx, rcode: .nameError, authorities: [Self.soa(ttl: 900, minimum: 900)]))
        #expect(lookup(capped, nx, at: 29) != nil && lookup(capped, nx, at: 30) == nil)

        let noSOA = Self.query("bare.test.")
        store(cache, noSOA, Self.reply(to: noSOA, rcode: .nameError))
        #expect(lookup(cache, noSOA, at: 0) == nil, "no SOA, no negative caching (RFC 2308 §5)")
    }

    @Test func serverFailuresAreKeptBrieflyOrNotAtAll() {
        let query = Self.query("broken.test.")
        let cache = InMemoryDNSResponseCache()
        store(cache, query, Self.reply(to: query, rcode: .serverFailure))
        #expect(lookup(cache, query, at: 4)?.header.responseCode == .serverFailure)
        #expect(lookup(cache, query, at: 5) == nil)
        let never = InMemoryDNSResponseCache(configuration: .init(serverFailureTTL: 0))
        store(never, query, Self.reply(to: query, rcode: .serverFailure))
        #expect(lookup(never, query, at: 0) == nil)
        store(cache, query, Self.reply(to: query, rcode: .refused))
        #expect(lookup(cache, query, at: 0) == nil, "REFUSED is never stored")
    }

    @Test func anUpdateKeepsTheEntriesThatFitAndChangesThePolicyForWhatComesNext() {
        let recorded = RecordedMetrics()
        let cache = InMemoryDNSResponseCache(
            configuration: .init(maximumEntries: 8),
            shardCount: 1,
            metrics: recorded.metrics
        )
        let queries = (0..<8).map { Self.query(try! DNSName(parsing: "u\($0).test.")) }
        for (index, query) in queries.enumerated() {
            store(
                cache,
                query,
                Self.reply(to: query, answers: [Self.a(try! DNSName(parsing: "u\(index).test."), ttl: 300)])
            )
        }
        #expect(cache.count == 8)
        cache.update(configuration: .init(maximumEntries: 3, maximumTTL: 60))
        #expect(cache.count == 3 && recorded.count(DNSProxyMetrics.Name.cacheEvictions) == 5, "shrunk, not flushed")
        #expect(lookup(cache, queries[7], at: 100)?.answers.first?.ttl == 200, "a kept entry keeps its lifetime")
        let later = Self.query("later.test.")
        store(cache, later, Self.reply(to: later, answers: [Self.a("later.test.", ttl: 300)]))
        #expect(lookup(cache, later, at: 0)?.answers.first?.ttl == 60, "a new entry gets the new ceiling")
        #expect(cache.configuration.maximumTTL == 60 && !cache.servesStale)
        cache.update(configuration: .init(maximumEntries: 3, serveStale: true))
        #expect(cache.servesStale)
    }

    @Test func truncatedRepliesAreNeverStored() {
        let cache = InMemoryDNSResponseCache()
        let query = Self.query("big.test.", type: .txt)
        store(cache, query, Self.reply(to: query, answers: [Self.a("big.test.", ttl: 300)], truncated: true))
        #expect(lookup(cache, query, at: 0) == nil && cache.count == 0)
    }

    @Test func doAndCDGiveDistinctEntries() {
        let cache = InMemoryDNSResponseCache()
        let plain = Self.query("sec.test.")
        store(cache, plain, Self.reply(to: plain, answers: [Self.a("sec.test.", ttl: 300)]))
        #expect(lookup(cache, Self.query("sec.test.", dnssecOK: true), at: 0) == nil)
        #expect(lookup(cache, Self.query("sec.test.", cd: true), at: 0) == nil)
        #expect(lookup(cache, Self.query("sec.test.", type: .aaaa), at: 0) == nil)
        #expect(lookup(cache, plain, at: 0) != nil)
        let secure = Self.query("sec.test.", dnssecOK: true)
        store(cache, secure, Self.reply(to: secure, answers: [Self.a("sec.test.", ttl: 100)]))
        #expect(lookup(cache, secure, at: 0)?.answers.first?.ttl == 100)
        #expect(lookup(cache, secure, at: 0)?.edns?.dnssecOK == true)
        #expect(lookup(cache, plain, at: 0)?.answers.first?.ttl == 300)
    }

    @Test func leastRecentlyUsedIsEvictedAtEitherBound() {
        let recorded = RecordedMetrics()
        let cache = InMemoryDNSResponseCache(
            configuration: .init(maximumEntries: 3),
            shardCount: 1,
            metrics: recorded.metrics
        )
        let queries = (0..<4).map { Self.query(try! DNSName(parsing: "n\($0).test.")) }
        for (index, query) in queries.prefix(3).enumerated() {
            store(
                cache,
                query,
                Self.reply(to: query, answers: [Self.a(try! DNSName(parsing: "n\(index).test."), ttl: 300)])
            )
        }
        _ = lookup(cache, queries[0], at: 1)  // n0 becomes most recent; n1 is now the oldest.
        store(cache, queries[3], Self.reply(to: queries[3], answers: [Self.a("n3.test.", ttl: 300)]))
        #expect(lookup(cache, queries[1], at: 2) == nil)
        #expect(
            lookup(cache, queries[0], at: 2) != nil && lookup(cache, queries[2], at: 2) != nil
                && lookup(cache, queries[3], at: 2) != nil
        )
        #expect(recorded.count(DNSProxyMetrics.Name.cacheEvictions) == 1 && cache.count == 3)

        let recordedSmall = RecordedMetrics()
        let small = InMemoryDNSResponseCache(
            configuration: .init(maximumBytes: 100),
            shardCount: 1,
            metrics: recordedSmall.metrics
        )
        for (index, query) in queries.enumerated() {
            store(
                small,
                query,
                Self.reply(to: query, answers: [Self.a(try! DNSName(parsing: "n\(index).test."), ttl: 300)])
            )
        }
        #expect(small.bytes <= 100 && small.count < 4 && recordedSmall.count(DNSProxyMetrics.Name.cacheEvictions) > 0)
        #expect(lookup(small, queries[3], at: 0) != nil, "the newest entry is kept")

        let off = InMemoryDNSResponseCache(configuration: .init(maximumEntries: 0))
        store(off, queries[0], Self.reply(to: queries[0], answers: [Self.a("n0.test.", ttl: 300)]))
        #expect(lookup(off, queries[0], at: 0) == nil)
    }

    @Test func capturedRepliesRoundTripThroughTheCache() throws {
        let cache = InMemoryDNSResponseCache()
        for name in ["a", "cname", "mx", "txt", "nxdomain", "nodata", "https", "unknown-type", "big-txt"] {
            let query = try Fixtures.query(name)
            let reply = try Fixtures.response(name)
            store(cache, query, reply)
            let hit = try #require(lookup(cache, query, at: 10), "\(name)")
            let original = try DNSMessage(decoding: reply)
            #expect(hit.answers.map(\.rdata) == original.answers.map(\.rdata), "\(name)")
            #expect(hit.authorities.map(\.rdata) == original.authorities.map(\.rdata), "\(name)")
            #expect(hit.answers.allSatisfy { $0.ttl <= 290 }, "\(name)")
        }
    }

    @Test func concurrentUseFromManyTasks() async {
        let cache = InMemoryDNSResponseCache(configuration: .init(maximumEntries: 500))
        await withTaskGroup(of: Int.self) { group in
            for worker in 0..<4 {
                group.addTask {
                    var hits = 0
                    for index in 0..<2_000 {
                        let name = try! DNSName(parsing: "w\((index + worker) % 700).test.")
                        let query = Self.query(name, id: UInt16(index))
                        if cache.lookup(query, now: Self.at(seconds: 1)) != nil {
                            hits += 1
                        } else {
                            let reply = Self.reply(to: query, answers: [Self.a(name, ttl: 300)])
                            cache.store(reply, for: query, now: Self.at(seconds: 0))
                            // Found at once, unless the other workers' stores evict it first, which
                            // takes every other entry of its shard to have been hit since the hand
                            // last passed: either way some lookup hits. (Hits across workers alone
                            // depend on how the tasks interleave: 700 names cycled through 500
                            // entries, one worker after another, hit nothing.)
                            if cache.lookup(query, now: Self.at(seconds: 1)) != nil { hits += 1 }
                        }
                    }
                    return hits
                }
            }
            var total = 0
            for await hits in group { total += hits }
            #expect(total > 0)
        }
        #expect(cache.count <= 500)
    }

    @Test func theNoOpCacheCachesNothing() {
        let cache = NoOpDNSResponseCache()
        let query = Self.query("a.test.")
        let reply = Self.reply(to: query, answers: [Self.a("a.test.", ttl: 300)])
        cache.store(reply, for: query, now: Self.at(seconds: 0))
        #expect(cache.lookup(query, now: Self.at(seconds: 0)) == nil)
    }
}

@Suite struct ServeStaleAndPrefetchTests {
    typealias T = InMemoryDNSResponseCacheTests

    func store(_ cache: InMemoryDNSResponseCache, _ query: ByteBuffer, _ reply: ByteBuffer, at seconds: Int64) {
        cache.store(reply, for: query, now: T.at(seconds: seconds))
    }

    @Test func expiredRepliesAreServedStaleOnlyWhenAskedAndNeverSERVFAIL() throws {
        let cache = InMemoryDNSResponseCache(configuration: .init(serveStale: true, staleWindow: 3600))
        #expect(cache.servesStale)
        let query = T.query("stale.test.", id: 1)
        store(cache, query, T.reply(to: query, answers: [T.a("stale.test.", ttl: 60)]), at: 0)
        let later = T.query("STALE.test.", id: 42)
        #expect(
            cache.lookup(later, now: T.at(seconds: 100)) == nil,
            "expired: a normal lookup misses"
        )
        let stale = try DNSMessage(
            decoding: #require(cache.lookupStale(later, now: T.at(seconds: 100)))
        )
        #expect(stale.header.id == 42 && stale.questions.first?.name.description == "STALE.test.")
        #expect(stale.answers.map(\.ttl) == [InMemoryDNSResponseCache.staleTTL])
        #expect(
            cache.lookupStale(later, now: T.at(seconds: 60 + 3600)) == nil,
            "past the stale window"
        )

        let broken = T.query("broken.test.")
        store(cache, broken, T.reply(to: broken, rcode: .serverFailure), at: 0)
        #expect(
            cache.lookupStale(broken, now: T.at(seconds: 10)) == nil,
            "SERVFAIL is never served stale"
        )

        let plain = InMemoryDNSResponseCache()
        store(plain, query, T.reply(to: query, answers: [T.a("stale.test.", ttl: 60)]), at: 0)
        #expect(!plain.servesStale && plain.lookupStale(query, now: T.at(seconds: 100)) == nil)
    }

    @Test func prefetchIsClaimedOnceInTheLastTenthOfTheLifetime() throws {
        let cache = InMemoryDNSResponseCache(configuration: .init(prefetch: true))
        let query = T.query("hot.test.")
        store(cache, query, T.reply(to: query, answers: [T.a("hot.test.", ttl: 100)]), at: 0)
        #expect(!cache.claimPrefetch(query, now: T.at(seconds: 50)))
        #expect(cache.claimPrefetch(query, now: T.at(seconds: 91)))
        #expect(!cache.claimPrefetch(query, now: T.at(seconds: 95)), "only once")
        store(cache, query, T.reply(to: query, answers: [T.a("hot.test.", ttl: 100)]), at: 95)
        #expect(
            cache.claimPrefetch(query, now: T.at(seconds: 186)),
            "a refreshed entry can be prefetched again"
        )
        let off = InMemoryDNSResponseCache()
        store(off, query, T.reply(to: query, answers: [T.a("hot.test.", ttl: 100)]), at: 0)
        #expect(!off.claimPrefetch(query, now: T.at(seconds: 95)))
    }
}
