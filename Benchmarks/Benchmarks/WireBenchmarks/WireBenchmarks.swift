import Benchmark
import Dispatch
import DoTCore
import Foundation
import NIOCore

/// This process's resident memory, from /proc/self/statm.
func residentBytes() -> Int {
    let fields = (try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8))?.split(separator: " ") ?? []
    return fields.count > 1 ? (Int(fields[1]) ?? 0) * 4096 : 0
}

/// A typical forwarded response: www.example.com A → CNAME plus two A records, with an EDNS OPT
/// record, 117 octets on the wire.
func typicalResponse() -> DNSMessage {
    var message = DNSMessage.query(name: "www.example.com.", type: .a, id: 0x1234)
    message.header.isResponse = true
    message.header.recursionAvailable = true
    message.answers = [
        DNSResourceRecord(name: "www.example.com.", ttl: 3600, rdata: .cname("web.example.com.")),
        DNSResourceRecord(name: "web.example.com.", ttl: 300, rdata: .a(IPv4Address(192, 0, 2, 10))),
        DNSResourceRecord(name: "web.example.com.", ttl: 300, rdata: .a(IPv4Address(192, 0, 2, 11))),
    ]
    message.authorities = [DNSResourceRecord(name: "example.com.", ttl: 86400, rdata: .ns("ns1.example.com."))]
    return message
}

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .cpuTotal, .mallocCountTotal, .throughput],
        warmupIterations: 1000,
        scalingFactor: .kilo,
        maxDuration: .seconds(3),
        maxIterations: 1_000_000
    )
    let message = typicalResponse()
    let wire = try! message.encoded()

    Benchmark("Wire: view parse + ID rewrite + TTL ageing (\(wire.readableBytes) B)") { benchmark in
        var buffer = wire
        buffer.writeInteger(UInt8(0))  // Make the buffer this benchmark's own before measuring.
        buffer.moveWriterIndex(to: buffer.writerIndex - 1)
        benchmark.startMeasurement()
        for iteration in benchmark.scaledIterations {
            let view = try DNSMessageView(buffer)
            view.setID(UInt16(truncatingIfNeeded: iteration), in: &buffer)
            view.ageTTLs(by: 1, in: &buffer)
            blackHole(view)
        }
    }

    Benchmark("Wire: full decode (\(wire.readableBytes) B)") { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(try DNSMessage(decoding: wire))
        }
    }

    Benchmark("Wire: encode with compression") { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(try message.encoded())
        }
    }

    rateLimitBenchmarks()
    cacheBenchmarks()
    filterBenchmarks()
}

/// Rate-limiter decisions (issue 6 target: under 100 ns, no allocation).
let rateLimitBenchmarks: @Sendable () -> Void = {
    let limiter = TokenBucketRateLimiter(configuration: .init(queriesPerSecond: 1e9, burst: 1e9))
    let hot = ClientAddress(IPv4Address(192, 0, 2, 1))
    let now = NIODeadline.now()

    Benchmark("RateLimit: admit, one hot client") { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(limiter.decide(for: hot, clientProtocol: .udp, now: now))
        }
    }

    let many = TokenBucketRateLimiter(configuration: .init(queriesPerSecond: 1e9, burst: 1e9, maximumPrefixes: 100_000))
    let clients = (0..<65_536).map { ClientAddress(IPv4Address(rawValue: 0x0A00_0000 | UInt32($0))) }
    Benchmark("RateLimit: admit, 65,536 distinct clients") { benchmark in
        for iteration in benchmark.scaledIterations {
            blackHole(many.decide(for: clients[iteration & 0xFFFF], clientProtocol: .udp, now: now))
        }
    }
}

/// Cache hits (issue 5 target: under 300 ns with one allocation, the reply buffer).
let cacheBenchmarks: @Sendable () -> Void = {
    let cache = InMemoryDNSResponseCache()
    let query = try! ParsedDNSMessage(DNSMessage.query(name: "www.example.com.", type: .a, id: 7).encoded())
    let key = DNSCacheKey(query)!
    let reply = try! ParsedDNSMessage(typicalResponse().encoded())
    let now = NIODeadline.now()
    cache.store(reply, key: key, now: now)

    Benchmark("Cache: hit (lookup + reply build), one thread") { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(cache.lookup(query, key: key, now: now))
        }
    }

    // Each thread asks its own name, as event loops on different cores mostly do; the names fall in
    // different shards, so the threads do not share a lock.
    let perThread = ["www.example.com.", "mail.example.org."].map { name -> (ParsedDNSMessage, DNSCacheKey) in
        var message = typicalResponse()
        message.questions = [DNSQuestion(name: try! DNSName(parsing: name), type: .a)]
        message.answers[0].name = message.questions[0].name
        let query = try! ParsedDNSMessage(DNSMessage.query(name: message.questions[0].name, type: .a, id: 7).encoded())
        let key = DNSCacheKey(query)!
        cache.store(try! ParsedDNSMessage(message.encoded()), key: key, now: now)
        return (query, key)
    }
    Benchmark(
        "Cache: hit (lookup + reply build), two threads, a name each",
        configuration: .init(metrics: [.wallClock, .cpuTotal, .mallocCountTotal])
    ) { benchmark in
        let iterations = benchmark.scaledIterations.count
        DispatchQueue.concurrentPerform(iterations: 2) { thread in
            let (query, key) = perThread[thread]
            for _ in 0..<iterations { blackHole(cache.lookup(query, key: key, now: now)) }
        }
    }

    // The worst case: both threads hit the same entry, so they contend on one shard's lock.
    Benchmark(
        "Cache: hit (lookup + reply build), two threads, same name",
        configuration: .init(metrics: [.wallClock, .cpuTotal, .mallocCountTotal])
    ) { benchmark in
        let iterations = benchmark.scaledIterations.count
        DispatchQueue.concurrentPerform(iterations: 2) { _ in
            for _ in 0..<iterations { blackHole(cache.lookup(query, key: key, now: now)) }
        }
    }

    // 100,000 distinct names of about 100-octet replies, stored into a cache bounded at 10,000 entries:
    // every store past the bound evicts.
    let names = (0..<100_000).map { index -> (DNSCacheKey, ParsedDNSMessage) in
        var message = DNSMessage.query(name: try! DNSName(parsing: "host\(index).example.com."), type: .a, id: 1)
        let query = try! message.encoded()
        message.header.isResponse = true
        message.answers = [
            DNSResourceRecord(
                name: message.questions[0].name,
                ttl: 300,
                rdata: .a(IPv4Address(rawValue: UInt32(index)))
            )
        ]
        let reply = try! message.encoded()
        return (DNSCacheKey(try! ParsedDNSMessage(query))!, try! ParsedDNSMessage(reply))
    }
    // A cache already at its bound of 10,000 entries, so every store evicts one.
    let bounded = InMemoryDNSResponseCache(configuration: .init(maximumEntries: 10_000))
    for (key, reply) in names.prefix(20_000) {
        bounded.store(reply, key: key, now: now)
    }
    Benchmark("Cache: store with eviction (cache full at 10,000)") { benchmark in
        for iteration in benchmark.scaledIterations {
            let (key, reply) = names[iteration % names.count]
            bounded.store(reply, key: key, now: now)
        }
    }

    // Resident memory the cache adds for 100,000 entries, measured around the stores only (the test
    // replies themselves are allocated beforehand), minus the replies' own wire bytes.
    Benchmark(
        "Cache: overhead per entry beyond the wire bytes, 100,000 entries (bytes)",
        configuration: .init(
            metrics: [.custom("overhead bytes per entry", polarity: .prefersSmaller, useScalingFactor: false)],
            scalingFactor: .one,
            maxIterations: 3
        )
    ) { benchmark in
        let before = residentBytes()
        let big = InMemoryDNSResponseCache(configuration: .init(maximumEntries: 100_000, maximumBytes: 1 << 30))
        for (key, reply) in names {
            big.store(reply, key: key, now: now)
        }
        let held = residentBytes() - before
        benchmark.measurement(.custom("overhead bytes per entry"), (held - big.bytes) / big.count)
        blackHole(big)
    }
}

/// A filter over a 1,000,000-name blocklist (issue 39 target: a lookup, hit or miss, at most 150 ns at
/// p50 with no allocation). Each iteration is one query's decision; the names are four labels deep.
let filterBenchmarks: @Sendable () -> Void = {
    var text = ""
    text.reserveCapacity(40_000_000)
    for index in 0..<1_000_000 { text += "0.0.0.0 host-\(index).ads\(index % 997).example-\(index % 13).com\n" }
    let filter = DomainListFilter(blocklists: [DomainList(parsing: text, name: "million")])
    let client = try! SocketAddress(ipAddress: "127.0.0.1", port: 5300)
    let hit = try! ParsedDNSMessage(
        DNSMessage.query(name: "www.host-123456.ads825.example-8.com.", type: .a, id: 1).encoded()
    )
    let miss = try! ParsedDNSMessage(DNSMessage.query(name: "www.example.org.", type: .a, id: 1).encoded())
    // The set's lookup alone, for a name it holds (a subdomain of one): the wire octets as a query
    // carries them.
    let set = DomainList(parsing: text, name: "million").blocked
    let hitName: [UInt8] =
        [3] + Array("www".utf8) + [11] + Array("host-123456".utf8) + [6] + Array("ads825".utf8)
        + [9] + Array("example-8".utf8) + [3] + Array("com".utf8)
    Benchmark("Filter: 1,000,000 names, a hit (the set lookup alone)") { benchmark in
        hitName.withUnsafeBytes { name in
            for _ in benchmark.scaledIterations { blackHole(set.matches(wireName: name)) }
        }
    }
    // The hit's decision builds the blocked reply too; the set's own lookup is the miss's cost.
    Benchmark("Filter: 1,000,000 names, a miss (the set lookup alone)") { benchmark in
        for _ in benchmark.scaledIterations { blackHole(filter.decide(miss, client: client)) }
    }
    Benchmark("Filter: 1,000,000 names, a hit (lookup and the NXDOMAIN reply)") { benchmark in
        for _ in benchmark.scaledIterations { blackHole(filter.decide(hit, client: client)) }
    }
}
