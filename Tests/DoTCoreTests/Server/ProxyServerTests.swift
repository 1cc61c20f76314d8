import DoTCore
import DoTCoreTesting
import Logging
import MetricsTestKit
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import ServiceLifecycle
import Testing

/// The proxy end to end on loopback: a client, DNSProxyServer, and the in-process GnuTLS upstream.
@Suite(.serialized) struct ProxyServerTests {
    let group = MultiThreadedEventLoopGroup.singleton

    /// A running proxy in front of `upstreamPort`; `body` gets the proxy's port.
    func withProxy(
        upstreamPort: Int,
        caFile: String = TestCertificates.caFile,
        name: String = TestCertificates.serverName,
        queryTimeout: TimeAmount = .seconds(2),
        grace: TimeAmount = .seconds(2),
        recorded: RecordedMetrics = RecordedMetrics(),
        _ body: (Int, ServiceGroup, RecordedMetrics) async throws -> Void
    ) async throws {
        var tls = TLSClientConfiguration.makeStrict()
        tls.trustRoots = .pemFile(caFile)
        let transport = DoTUpstreamTransport(
            configuration: .init(
                upstream: UpstreamAddress(host: "127.0.0.1", port: upstreamPort, authenticationName: name)
            ),
            tlsContext: try TLSClientContext(configuration: tls)
        )
        let handler = ForwardingQueryHandler(
            transport: transport,
            queryTimeout: queryTimeout,
            metrics: recorded.metrics
        )
        let server = DNSProxyServer(
            configuration: .init(
                listenAddresses: [try SocketAddress(ipAddress: "127.0.0.1", port: 0)],
                shutdownGracePeriod: grace
            ),
            handler: handler,
            eventLoopGroup: group,
            metrics: recorded.metrics
        )
        try await server.serving { port, services in try await body(port, services, recorded) }
        await transport.shutdown()
    }

    @Test func openClientTCPConnectionsAreReported() async throws {
        let upstream = try await TestDoTServer.start(group: group)
        let recorded = RecordedMetrics()
        try await withProxy(upstreamPort: upstream.port, recorded: recorded) { port, _, _ in
            let replies = try await TestDNSClient.tcp([try Self.query("a.test.")], port: port, group: group)
            #expect(replies.count == 1)
        }
        let open = try recorded.test.expectMeter(DNSProxyMetrics.Name.clientConnections)
        #expect(
            open.values.max() == 1 && open.lastValue == 0,
            "one connection opened, and closed by the time the server stopped"
        )
        try await upstream.stop()
    }

    static func query(
        _ name: DNSName,
        type: DNSRecordType = .a,
        id: UInt16 = 0x1111,
        edns: EDNSRecord? = EDNSRecord()
    ) throws -> ByteBuffer {
        try DNSMessage.query(name: name, type: type, id: id, edns: edns).encoded()
    }

    static let bigStrings = (1...6).map { Array(repeating: UInt8(0x30 + $0), count: 250) }

    static func responder(_ query: DNSMessage) -> TestDoTServer.Response {
        var reply = TestDoTServer.answer(query)
        switch query.questions.first?.name {
        case "big.test.":
            reply.answers = [DNSResourceRecord(name: "big.test.", ttl: 60, rdata: .txt(bigStrings))]
        case "slow.test.":
            return .delayedReply(reply, .milliseconds(300))
        case "dead.test.":
            return .silence
        default:
            break
        }
        return .reply(reply)
    }

    @Test func answersOverUDPAndTCPWithTheClientsIDAndCase() async throws {
        let upstream = try await TestDoTServer.start(group: group, responder: Self.responder)
        try await withProxy(upstreamPort: upstream.port) { port, _, _ in
            let udp = try DNSMessage(
                decoding: await TestDNSClient.udp(Self.query("MiXeD.TeSt.", id: 0xABCD), port: port, group: group)
            )
            #expect(udp.header.id == 0xABCD && udp.header.isResponse && udp.header.responseCode == .noError)
            #expect(udp.questions.first?.name.description == "MiXeD.TeSt.")
            #expect(udp.answers.first?.rdata == .a(IPv4Address(192, 0, 2, 1)))
            #expect(udp.edns?.udpPayloadSize == 1232 && udp.edns?.option(.padding) == nil)

            let tcp = try await TestDNSClient.tcp([Self.query("a.test.", id: 7)], port: port, group: group)
            #expect(try DNSMessage(decoding: tcp[0]).header.id == 7)

            // A client without EDNS gets no OPT back.
            let plain = try DNSMessage(
                decoding: await TestDNSClient.udp(Self.query("a.test.", edns: nil), port: port, group: group)
            )
            #expect(plain.edns == nil && plain.answers.count == 1)
        }
        try await upstream.stop()
    }

    @Test func pipelinedTCPQueriesAreAnsweredAsTheyComplete() async throws {
        let upstream = try await TestDoTServer.start(group: group, responder: Self.responder)
        try await withProxy(upstreamPort: upstream.port) { port, _, _ in
            let replies = try await TestDNSClient.tcp(
                [Self.query("slow.test.", id: 1), Self.query("b.test.", id: 2), Self.query("c.test.", id: 3)],
                port: port,
                group: group
            )
            let ids = try replies.map { try DNSMessage(decoding: $0).header.id }
            #expect(Set(ids) == [1, 2, 3])
            #expect(ids.last == 1, "the slow reply should come last, got \(ids)")
        }
        try await upstream.stop()
    }

    @Test func aLargeReplyIsTruncatedOverUDPAndWholeOverTCP() async throws {
        let upstream = try await TestDoTServer.start(group: group, responder: Self.responder)
        try await withProxy(upstreamPort: upstream.port) { port, _, recorded in
            let noEDNS = try await TestDNSClient.udp(
                Self.query("big.test.", type: .txt, edns: nil),
                port: port,
                group: group
            )
            let truncated = try DNSMessage(decoding: noEDNS)
            #expect(truncated.header.isTruncated && truncated.answers.isEmpty && truncated.edns == nil)
            #expect(truncated.questions.first?.name == "big.test." && noEDNS.readableBytes <= 512)

            let small = try DNSMessage(
                decoding: await TestDNSClient.udp(
                    Self.query("big.test.", type: .txt, edns: EDNSRecord(udpPayloadSize: 1232)),
                    port: port,
                    group: group
                )
            )
            #expect(small.header.isTruncated && small.edns != nil, "OPT is kept in a truncated reply")

            // A client that can take 4,096 octets still gets at most 1,232 over UDP.
            let large = try DNSMessage(
                decoding: await TestDNSClient.udp(
                    Self.query("big.test.", type: .txt, edns: EDNSRecord(udpPayloadSize: 4096)),
                    port: port,
                    group: group
                )
            )
            #expect(large.header.isTruncated && large.answers.isEmpty)

            let overTCP = try DNSMessage(
                decoding: await TestDNSClient.tcp(
                    [Self.query("big.test.", type: .txt, edns: nil)],
                    port: port,
                    group: group
                )[0]
            )
            #expect(!overTCP.header.isTruncated && overTCP.answers.first?.rdata == .txt(Self.bigStrings))
            #expect(recorded.count(DNSProxyMetrics.Name.truncated) == 3)
        }
        try await upstream.stop()
    }

    @Test func aLargeUDPQueryIsReadWholeAndALongerOneGetsFORMERR() async throws {
        // A long name and 1,500 octets of padding: about 1,770 octets, read in one recvmmsg slice.
        let upstream = try await TestDoTServer.start(group: group, responder: Self.responder)
        try await withProxy(upstreamPort: upstream.port) { port, _, recorded in
            let label = String(repeating: "l", count: 60)
            let name = try DNSName(parsing: "\(label).\(label).\(label).\(label).test.")
            let query = try Self.query(name, edns: EDNSRecord(options: [.padding(length: 1500)]))
            #expect(query.readableBytes > 1700)
            let reply = try DNSMessage(decoding: await TestDNSClient.udp(query, port: port, group: group))
            #expect(reply.header.responseCode == .noError && reply.questions.first?.name == name)
            #expect(reply.answers.first?.rdata == .a(IPv4Address(192, 0, 2, 1)))

            // Past the read size the datagram is cut, so it cannot parse: FORMERR, counted, same ID.
            let tooLong = try Self.query(name, id: 0x2222, edns: EDNSRecord(options: [.padding(length: 1800)]))
            #expect(tooLong.readableBytes > 2048)
            let rejected = try DNSMessage(decoding: await TestDNSClient.udp(tooLong, port: port, group: group))
            #expect(rejected.header.id == 0x2222 && rejected.header.responseCode == .formatError)
            #expect(recorded.count(DNSProxyMetrics.Name.malformed, [("action", "formerr")]) == 1)
        }
        try await upstream.stop()
    }

    @Test func malformedPacketsGetFORMERROrAreDroppedAndServiceContinues() async throws {
        let upstream = try await TestDoTServer.start(group: group, responder: Self.responder)
        try await withProxy(upstreamPort: upstream.port) { port, _, recorded in
            let selfPointer = ByteBuffer(bytes: [0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0, 12, 0, 1, 0, 1])
            let formerr = try DNSMessage(decoding: await TestDNSClient.udp(selfPointer, port: port, group: group))
            #expect(
                formerr.header.id == 0x1234 && formerr.header.responseCode == .formatError && formerr.header.isResponse
            )

            var twoQuestions = try DNSMessage(decoding: Self.query("a.test."))
            twoQuestions.questions.append(DNSQuestion(name: "b.test.", type: .a))
            #expect(
                try DNSMessage(decoding: await TestDNSClient.udp(twoQuestions.encoded(), port: port, group: group))
                    .header.responseCode == .formatError
            )

            var notify = try DNSMessage(decoding: Self.query("a.test."))
            notify.header.opcode = .notify
            #expect(
                try DNSMessage(decoding: await TestDNSClient.udp(notify.encoded(), port: port, group: group)).header
                    .responseCode == .notImplemented
            )

            // Too short, and a response instead of a query: dropped without a reply.
            await #expect(throws: TestDNSClient.NoReply.self) {
                _ = try await TestDNSClient.udp(
                    ByteBuffer(bytes: [1, 2, 3]),
                    port: port,
                    timeout: .milliseconds(200),
                    group: group
                )
            }
            var response = try DNSMessage(decoding: Self.query("a.test."))
            response.header.isResponse = true
            await #expect(throws: TestDNSClient.NoReply.self) {
                _ = try await TestDNSClient.udp(
                    response.encoded(),
                    port: port,
                    timeout: .milliseconds(200),
                    group: group
                )
            }
            // Garbage on TCP closes that connection only.
            _ = try? await TestDNSClient.tcp(
                [ByteBuffer(bytes: [0xFF, 0xFF])],
                port: port,
                timeout: .milliseconds(300),
                group: group
            )
            #expect(
                try DNSMessage(decoding: await TestDNSClient.udp(Self.query("a.test."), port: port, group: group))
                    .answers.count == 1
            )

            // The short packet, the response, and the cut-off TCP frame flushed when that connection closed.
            #expect(recorded.count(DNSProxyMetrics.Name.malformed, [("action", "dropped")]) >= 2)
            #expect(recorded.count(DNSProxyMetrics.Name.malformed, [("action", "formerr")]) == 2)
            #expect(recorded.replies(.notImplemented) == 1)
        }
        try await upstream.stop()
    }

    @Test func anUpstreamThatIsDownGivesSERVFAILWithinTheDeadline() async throws {
        let upstream = try await TestDoTServer.start(group: group, responder: Self.responder)
        let deadPort = upstream.port
        try await withProxy(upstreamPort: deadPort, queryTimeout: .milliseconds(500)) { port, _, _ in
            // Silent upstream: the deadline holds.
            let start = NIODeadline.now()
            let silent = try DNSMessage(
                decoding: await TestDNSClient.udp(Self.query("dead.test."), port: port, group: group)
            )
            #expect(silent.header.responseCode == .serverFailure)
            #expect(NIODeadline.now() - start < .milliseconds(1500))
            // Upstream gone: refused connection, SERVFAIL at once.
            try await upstream.stop()
            let refused = try DNSMessage(
                decoding: await TestDNSClient.udp(Self.query("x.test."), port: port, group: group)
            )
            #expect(refused.header.responseCode == .serverFailure && refused.questions.first?.name == "x.test.")
        }
    }

    @Test func gracefulShutdownAnswersQueriesInFlight() async throws {
        let upstream = try await TestDoTServer.start(group: group, responder: Self.responder)
        try await withProxy(upstreamPort: upstream.port) { port, serviceGroup, _ in
            async let reply = TestDNSClient.tcp([Self.query("slow.test.", id: 9)], port: port, group: group)
            // Wait until the query has reached the upstream, then shut down while it is in flight.
            while upstream.queryCount == 0 { await Task.yield() }
            await serviceGroup.triggerGracefulShutdown()
            let replies = try await reply
            #expect(try DNSMessage(decoding: replies[0]).header.id == 9)
        }
        try await upstream.stop()
    }

    @Test func throughDotproxyToARealUnbound() async throws {
        let rig = try UnboundRig()
        defer { rig.stop() }
        try await withProxy(upstreamPort: rig.dotPort, caFile: rig.caFile, name: rig.serverName) { port, _, _ in
            let udp = try DNSMessage(decoding: await TestDNSClient.udp(Self.query("a.test."), port: port, group: group))
            #expect(Set(udp.answers.map(\.rdata)) == [.a(IPv4Address(192, 0, 2, 1)), .a(IPv4Address(192, 0, 2, 2))])
            let truncated = try DNSMessage(
                decoding: await TestDNSClient.udp(
                    Self.query("big.test.", type: .txt, edns: nil),
                    port: port,
                    group: group
                )
            )
            #expect(truncated.header.isTruncated)
            let tcp = try DNSMessage(
                decoding: await TestDNSClient.tcp(
                    [Self.query("big.test.", type: .txt, edns: nil)],
                    port: port,
                    group: group
                )[0]
            )
            #expect(!tcp.header.isTruncated && tcp.answers.count == 1)
            let nx = try DNSMessage(
                decoding: await TestDNSClient.udp(Self.query("nope.test."), port: port, group: group)
            )
            #expect(nx.header.responseCode == .nameError && nx.authorities.first?.type == .soa)
        }
    }
}

/// The access list and the rate limiter end to end.
@Suite(.serialized) struct ProxyAccessAndLimitTests {
    let group = MultiThreadedEventLoopGroup.singleton

    func withProxy(
        accessControl: AccessControlList = .default,
        rateLimiter: (any QueryRateLimiter)? = nil,
        _ body: (Int) async throws -> Void
    ) async throws {
        let upstream = try await TestDoTServer.start(group: group)
        let transport = try upstream.makeTransport()
        let handler = ForwardingQueryHandler(
            transport: transport,
            accessControl: accessControl,
            rateLimiter: rateLimiter
        )
        let server = DNSProxyServer(
            configuration: .init(listenAddresses: [try SocketAddress(ipAddress: "127.0.0.1", port: 0)]),
            handler: handler,
            eventLoopGroup: group
        )
        try await server.serving { port, _ in try await body(port) }
        await transport.shutdown()
        try await upstream.stop()
    }

    func rcode(port: Int, from source: String) async throws -> DNSResponseCode {
        let query = try DNSMessage.query(name: "a.test.", type: .a, id: 1).encoded()
        return try DNSMessage(decoding: await TestDNSClient.udp(query, port: port, source: source, group: group)).header
            .responseCode
    }

    @Test func aClientOverTheLimitDoesNotAffectAnother() async throws {
        // A rate so low that no token comes back during the test: the limit is exactly the burst.
        let limiter = TokenBucketRateLimiter(configuration: .init(queriesPerSecond: 0.001, burst: 3))
        try await withProxy(rateLimiter: limiter) { port in
            var first: [DNSResponseCode] = []
            for _ in 0..<5 { first.append(try await rcode(port: port, from: "127.0.0.1")) }
            #expect(first == [.noError, .noError, .noError, .refused, .refused])
            let other = try await rcode(port: port, from: "127.0.0.2")
            #expect(other == .noError)
        }
        #expect(limiter.trackedPrefixes == 2)
    }

    @Test func clientsOutsideTheAccessListAreRefused() async throws {
        let acl = AccessControlList(allowed: [IPNetwork("127.0.0.2/32")!])
        try await withProxy(accessControl: acl) { port in
            let outside = try await rcode(port: port, from: "127.0.0.1")
            let inside = try await rcode(port: port, from: "127.0.0.2")
            #expect(outside == .refused && inside == .noError)
        }
    }
}

@Suite(.serialized) struct ProxyCacheTests {
    @Test func aRepeatedQueryIsAnsweredFromTheCache() async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        let upstream = try await TestDoTServer.start(group: group)
        let transport = try upstream.makeTransport()
        let recorded = RecordedMetrics()
        let server = DNSProxyServer(
            configuration: .init(listenAddresses: [try SocketAddress(ipAddress: "127.0.0.1", port: 0)]),
            handler: ForwardingQueryHandler(
                transport: transport,
                cache: InMemoryDNSResponseCache(metrics: recorded.metrics),
                metrics: recorded.metrics
            ),
            eventLoopGroup: group
        )
        try await server.serving { port, _ in
            for (id, name) in [(UInt16(1), "cached.test."), (2, "CACHED.test."), (3, "cached.TEST.")] {
                let query = try DNSMessage.query(name: DNSName(parsing: name), type: .a, id: id).encoded()
                let reply = try DNSMessage(decoding: await TestDNSClient.udp(query, port: port, group: group))
                #expect(reply.header.id == id && reply.questions.first?.name.description == name)
                #expect(reply.answers.first?.rdata == .a(IPv4Address(192, 0, 2, 1)))
            }
            let tcp = try await TestDNSClient.tcp(
                [DNSMessage.query(name: "cached.test.", type: .a, id: 4).encoded()],
                port: port,
                group: group
            )
            #expect(try DNSMessage(decoding: tcp[0]).header.id == 4)
            #expect(upstream.queryCount == 1, "only the first query went upstream")
            #expect(recorded.count(DNSProxyMetrics.Name.cacheHits) == 3)
        }
        await transport.shutdown()
        try await upstream.stop()
    }
}

@Suite(.serialized) struct ProxyCoalescingTests {
    @Test func tenIdenticalMissesMakeOneUpstreamQuery() async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        // The upstream holds its reply long enough for all ten clients to have asked, even when the
        // other suites keep the machine busy and the clients' tasks start late (300 ms was not).
        let upstream = try await TestDoTServer.start(group: group) { query in
            .delayedReply(TestDoTServer.answer(query), .seconds(1))
        }
        let transport = try upstream.makeTransport()
        let recorded = RecordedMetrics()
        let handler = ForwardingQueryHandler(transport: transport, queryTimeout: .seconds(5), metrics: recorded.metrics)
        let server = DNSProxyServer(
            configuration: .init(listenAddresses: [try SocketAddress(ipAddress: "127.0.0.1", port: 0)]),
            handler: handler,
            eventLoopGroup: group
        )
        try await server.serving { port, _ in
            let replies = try await withThrowingTaskGroup(of: (UInt16, DNSMessage).self) { tasks in
                for id in UInt16(1)...10 {
                    tasks.addTask {
                        let name: DNSName = id % 2 == 0 ? "HERD.test." : "herd.test."
                        let query = try DNSMessage.query(name: name, type: .a, id: id).encoded()
                        return (
                            id,
                            try DNSMessage(
                                decoding: await TestDNSClient.udp(
                                    query,
                                    port: port,
                                    timeout: .seconds(10),
                                    group: group
                                )
                            )
                        )
                    }
                }
                var all: [(UInt16, DNSMessage)] = []
                for try await reply in tasks { all.append(reply) }
                return all
            }
            #expect(replies.count == 10)
            for (id, reply) in replies {
                #expect(reply.header.id == id && reply.answers.first?.rdata == .a(IPv4Address(192, 0, 2, 1)))
                #expect(reply.questions.first?.name.description == (id % 2 == 0 ? "HERD.test." : "herd.test."))
            }
            #expect(upstream.queryCount == 1, "one upstream query for ten identical misses")
            #expect(recorded.count(DNSProxyMetrics.Name.coalesced) == 9)
        }
        await transport.shutdown()
        try await upstream.stop()
    }
}
