import DoTCore
import DoTCoreTesting
import MetricsTestKit
import NIOCore
import NIOEmbedded
import NIOPosix
import Testing

/// The metrics each component reports, read back through MetricsTestKit (no backend is
/// bootstrapped; each test has its own factory).
@Suite struct DNSProxyMetricsTests {
    typealias Name = DNSProxyMetrics.Name
    static let client = try! SocketAddress(ipAddress: "127.0.0.1", port: 40000)

    func ask(
        _ handler: ForwardingQueryHandler,
        _ name: DNSName = "a.test.",
        type: DNSRecordType = .a,
        clientProtocol: ClientProtocol = .udp
    ) async throws -> ByteBuffer? {
        try await send(
            handler,
            try DNSMessage.query(name: name, type: type, id: 7).encoded(),
            clientProtocol: clientProtocol
        )
    }

    func send(
        _ handler: ForwardingQueryHandler,
        _ packet: ByteBuffer,
        clientProtocol: ClientProtocol = .udp
    ) async throws -> ByteBuffer? {
        try await handler.handle(
            DNSClientQuery(message: packet, client: Self.client, clientProtocol: clientProtocol),
            on: MultiThreadedEventLoopGroup.singleton.next()
        ).get()
    }

    @Test func queriesRepliesDurationsAndCacheOutcomesAreCounted() async throws {
        let test = TestMetrics()
        let metrics = DNSProxyMetrics(factory: test)
        let handler = ForwardingQueryHandler(
            transport: ScriptedUpstreamTransport(),
            cache: InMemoryDNSResponseCache(metrics: metrics),
            metrics: metrics
        )
        _ = try await ask(handler)
        _ = try await ask(handler)
        _ = try await ask(handler, "b.test.", type: .aaaa, clientProtocol: .tcp)
        _ = try await ask(handler, "c.test.", type: DNSRecordType(rawValue: 4242))
        #expect(try test.expectCounter(Name.queries, [("transport", "udp"), ("qtype", "A")]).totalValue == 2)
        #expect(try test.expectCounter(Name.queries, [("transport", "tcp"), ("qtype", "AAAA")]).totalValue == 1)
        #expect(try test.expectCounter(Name.queries, [("transport", "udp"), ("qtype", "other")]).totalValue == 1)
        #expect(try test.expectCounter(Name.responses, [("rcode", "NOERROR")]).totalValue == 4)
        #expect(try test.expectCounter(Name.cacheHits).totalValue == 1)
        #expect(try test.expectCounter(Name.cacheMisses).totalValue == 3)
        // Only replies that waited for the upstream are timed: two UDP misses, one TCP miss.
        #expect(try test.expectTimer(Name.forwardedRequestDuration, [("transport", "udp")]).values.count == 2)
        #expect(try test.expectTimer(Name.forwardedRequestDuration, [("transport", "tcp")]).values.count == 1)
        #expect(
            try test.expectCounter(Name.rateLimitDecisions, [("action", "admit")]).totalValue == 0,
            "no limiter, nothing to count"
        )
        // Only the A answer is cacheable (the others are NODATA without an SOA).
        #expect(try test.expectMeter(Name.cacheEntries).lastValue == 1)
        #expect(try test.expectMeter(Name.cacheBytes).lastValue ?? 0 > 12)
    }

    @Test func malformedDeniedAndLimitedQueriesAreCountedByAction() async throws {
        let test = TestMetrics()
        let metrics = DNSProxyMetrics(factory: test)
        // The handler reads the wall clock; a token per 1,000 s keeps a slow machine from refilling
        // the bucket between the two queries.
        let limited = ForwardingQueryHandler(
            transport: ScriptedUpstreamTransport(),
            rateLimiter: TokenBucketRateLimiter(
                configuration: .init(queriesPerSecond: 0.001, burst: 1, action: .refuse)
            ),
            metrics: metrics
        )
        _ = try await ask(limited)
        #expect(try DNSMessage(decoding: try #require(try await ask(limited))).header.responseCode == .refused)
        let open = ForwardingQueryHandler(transport: ScriptedUpstreamTransport(), metrics: metrics)
        #expect(try await send(open, ByteBuffer(bytes: [1, 2, 3])) == nil)
        var header = try DNSMessage.query(name: "a.test.", type: .a, id: 1).encoded()
        header.moveWriterIndex(to: header.readerIndex + 14)
        let formerr = try #require(try await send(open, header))
        #expect(try DNSMessage(decoding: formerr).header.responseCode == .formatError)
        let badVersion = try DNSMessage.query(name: "a.test.", type: .a, id: 2, edns: EDNSRecord(version: 1)).encoded()
        #expect(
            try DNSMessage(decoding: try #require(try await send(open, badVersion))).header.responseCode == .badVersion
        )
        let denied = ForwardingQueryHandler(
            transport: ScriptedUpstreamTransport(),
            accessControl: AccessControlList(allowed: []),
            metrics: metrics
        )
        _ = try await ask(denied)
        #expect(try test.expectCounter(Name.rateLimitDecisions, [("action", "admit")]).totalValue == 1)
        #expect(try test.expectCounter(Name.rateLimitDecisions, [("action", "refuse")]).totalValue == 1)
        #expect(try test.expectCounter(Name.malformed, [("action", "dropped")]).totalValue == 1)
        #expect(try test.expectCounter(Name.malformed, [("action", "formerr")]).totalValue == 1)
        #expect(try test.expectCounter(Name.accessDenied).totalValue == 1)
        #expect(try test.expectCounter(Name.responses, [("rcode", "REFUSED")]).totalValue == 2)
        #expect(try test.expectCounter(Name.responses, [("rcode", "FORMERR")]).totalValue == 1)
        // BADVERS is NOERROR in the header; the extended bits in OPT make it BADVERS.
        #expect(try test.expectCounter(Name.responses, [("rcode", "BADVERS")]).totalValue == 1)
        #expect(try test.expectCounter(Name.responses, [("rcode", "NOERROR")]).totalValue == 1)
    }

    @Test func aFullCacheReportsEvictionsAndStaysAtItsBound() async throws {
        let test = TestMetrics()
        let metrics = DNSProxyMetrics(factory: test)
        let handler = ForwardingQueryHandler(
            transport: ScriptedUpstreamTransport(),
            cache: InMemoryDNSResponseCache(configuration: .init(maximumEntries: 2), shardCount: 1, metrics: metrics),
            metrics: metrics
        )
        for index in 0..<5 { _ = try await ask(handler, DNSName(stringLiteral: "n\(index).test.")) }
        #expect(try test.expectCounter(Name.cacheEvictions).totalValue == 3)
        #expect(try test.expectMeter(Name.cacheEntries).lastValue == 2)
    }

    @Test func staleAnswersAreCounted() async throws {
        let test = TestMetrics()
        let metrics = DNSProxyMetrics(factory: test)
        let upstream = ScriptedUpstreamTransport()
        let cache = InMemoryDNSResponseCache(configuration: .init(maximumTTL: 1, serveStale: true), metrics: metrics)
        let handler = ForwardingQueryHandler(transport: upstream, cache: cache, metrics: metrics)
        let query = try DNSMessage.query(name: "a.test.", type: .a, id: 7).encoded()
        let reply = try TestDoTServer.answer(DNSMessage(decoding: query)).encoded()
        // Stored two seconds ago with a one-second lifetime: expired, inside the stale window.
        cache.store(reply, for: query, now: .now() - .seconds(2))
        upstream.behaviour = .fail(.connectionRefused)
        #expect(try DNSMessage(decoding: try #require(try await ask(handler))).header.responseCode == .noError)
        #expect(try test.expectCounter(Name.cacheStaleAnswers).totalValue == 1)
    }

    @Test func thePoolReportsQueriesErrorsLatencyAndUpDown() async throws {
        let test = TestMetrics()
        let metrics = DNSProxyMetrics(factory: test)
        let loop = EmbeddedEventLoop()
        let good = ScriptedUpstreamTransport(name: "good")
        let bad = ScriptedUpstreamTransport(name: "bad", behaviour: .fail(.connectionRefused))
        let pool = UpstreamPool(
            members: [.init(name: "bad", transport: bad), .init(name: "good", transport: good)],
            configuration: .init(policy: .sequential, maximumFailures: 1, initialProbeDelay: .hours(1)),
            healthEventLoop: loop,
            metrics: metrics
        )
        defer { pool.stopHealthChecks() }
        #expect(try test.expectGauge(Name.upstreamUp, [("upstream", "bad")]).lastValue == 1)
        let query = try DNSMessage.query(name: "a.test.", type: .a, id: 1).encoded()
        _ = try await pool.send(query, deadline: .now() + .seconds(5), on: loop).get()
        good.behaviour = .respond(.serverFailure)
        _ = try await pool.send(query, deadline: .now() + .seconds(5), on: loop).get()
        #expect(try test.expectCounter(Name.upstreamQueries, [("upstream", "bad")]).totalValue == 1)
        #expect(try test.expectCounter(Name.upstreamQueries, [("upstream", "good")]).totalValue == 2)
        #expect(
            try test.expectCounter(Name.upstreamErrors, [("upstream", "bad"), ("kind", "connection_refused")])
                .totalValue == 1
        )
        #expect(
            try test.expectCounter(Name.upstreamErrors, [("upstream", "good"), ("kind", "failover_rcode")]).totalValue
                == 1
        )
        #expect(try test.expectGauge(Name.upstreamUp, [("upstream", "bad")]).lastValue == 0)
        #expect(try test.expectTimer(Name.upstreamDuration, [("upstream", "good")]).values.count == 2)
    }

    @Test func theDoTTransportReportsConnectionsAndHandshakes() async throws {
        let test = TestMetrics()
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let server = try await TestDoTServer.start(group: group)
        let transport = try server.makeTransport(metrics: DNSProxyMetrics(factory: test))
        let label = [("upstream", "127.0.0.1:\(server.port)#\(TestCertificates.serverName)")]
        _ = try await transport.send(
            try DNSMessage.query(name: "a.test.", type: .a, id: 1).encoded(),
            deadline: .now() + .seconds(5),
            on: group.next()
        ).get()
        #expect(try test.expectMeter(Name.upstreamConnections, label).lastValue == 1)
        #expect(try test.expectCounter(Name.upstreamHandshakes, label + [("resumed", "false")]).totalValue == 1)
        await transport.shutdown()
        #expect(try test.expectMeter(Name.upstreamConnections, label).lastValue == 0)
        try await server.stop()
        try await group.shutdownGracefully()
    }
}
