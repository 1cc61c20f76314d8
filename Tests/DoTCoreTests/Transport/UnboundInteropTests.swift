import DoTCore
import DoTCoreTesting
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing

/// The DoT transport against a real Unbound on loopback (installed by `.ci/run`).
@Suite(.serialized) struct UnboundInteropTests {
    /// What the transports of one test count; each test gets its own.
    let recorded = RecordedMetrics()
    let group = MultiThreadedEventLoopGroup.singleton

    func makeTransport(
        _ rig: UnboundRig,
        pins: [String] = [],
        configure: (inout DoTUpstreamTransport.Configuration) -> Void = { _ in }
    )
        throws -> DoTUpstreamTransport
    {
        var tls = TLSClientConfiguration.makeStrict()
        tls.trustRoots = .pemFile(rig.caFile)
        tls.spkiPins = Set(pins.compactMap { SPKIPin(base64: $0) })
        var configuration = DoTUpstreamTransport.Configuration(
            upstream: UpstreamAddress(host: "127.0.0.1", port: rig.dotPort, authenticationName: rig.serverName)
        )
        configure(&configuration)
        return DoTUpstreamTransport(
            configuration: configuration,
            tlsContext: try TLSClientContext(configuration: tls),
            metrics: recorded.metrics
        )
    }

    /// Asks Unbound over plain UDP, for comparison.
    func udpQuery(_ query: ByteBuffer, port: Int) async throws -> ByteBuffer {
        try await TestDNSClient.udp(query, port: port, group: group)
    }

    @Test func tenThousandQueriesOverFewConnectionsMatchPlainUDP() async throws {
        let rig = try UnboundRig()
        defer { rig.stop() }
        // Idle for longer than this task may wait for a thread while the whole suite runs under a
        // sanitizer: a connection closed for idleness would be opened again and counted below.
        let transport = try makeTransport(rig, pins: [rig.spkiPin]) { $0.idleTimeout = .seconds(60) }
        let loop = group.next()

        // The same question over DoT and over plain UDP gets the same answer records.
        for (name, type) in [
            ("a.test.", DNSRecordType.a), ("txt.test.", .txt), ("big.test.", .txt), ("nope.test.", .a),
            ("svc.test.", .https),
        ] {
            let query = try DNSMessage.query(name: DNSName(parsing: name), type: type, id: 99).encoded()
            let overTLS = try DNSMessage(
                decoding: await transport.send(query, deadline: .now() + .seconds(5), on: loop).get()
            )
            var plainQuery = try DNSMessage(decoding: query)
            plainQuery.edns = EDNSRecord(udpPayloadSize: 4096)
            let plain = try DNSMessage(decoding: await udpQuery(plainQuery.encoded(), port: rig.dnsPort))
            #expect(overTLS.header.id == 99)
            #expect(overTLS.header.responseCode == plain.header.responseCode, "\(name)")
            #expect(Set(overTLS.answers) == Set(plain.answers), "\(name)")
            #expect(Set(overTLS.authorities) == Set(plain.authorities), "\(name)")
        }

        // 10,000 unique names, 200 in flight at a time.
        let total = 10_000
        var answered = 0
        var next = 0
        while next < total {
            let batch = (next..<min(next + 200, total)).map { index in
                transport.send(
                    try! DNSMessage.query(
                        name: DNSName(parsing: "q\(index).unique.test."),
                        type: .a,
                        id: UInt16(truncatingIfNeeded: index)
                    ).encoded(),
                    deadline: .now() + .seconds(10),
                    on: loop
                )
            }
            for (offset, future) in batch.enumerated() {
                let reply = try DNSMessage(decoding: await future.get())
                #expect(reply.header.id == UInt16(truncatingIfNeeded: next + offset))
                #expect(reply.answers.first?.rdata == .a(IPv4Address(192, 0, 2, 99)))
                answered += 1
            }
            next += batch.count
        }
        #expect(answered == total)
        #expect(recorded.count(DNSProxyMetrics.Name.upstreamConnectionsOpened, of: transport) <= 2)
        #expect(
            recorded.count(DNSProxyMetrics.Name.upstreamDroppedReplies, of: transport, [("reason", "unmatched")]) == 0
        )
        await transport.shutdown()
    }

    @Test func aReconnectToUnboundResumesTheSession() async throws {
        let rig = try UnboundRig()
        defer { rig.stop() }
        let transport = try makeTransport(rig) { $0.maximumQueriesPerConnection = 1 }
        let loop = group.next()
        for id in UInt16(1)...3 {
            let query = try DNSMessage.query(name: "a.test.", type: .a, id: id).encoded()
            #expect(
                try DNSMessage(decoding: await transport.send(query, deadline: .now() + .seconds(5), on: loop).get())
                    .header.id == id
            )
        }
        #expect(recorded.count(DNSProxyMetrics.Name.upstreamConnectionsOpened, of: transport) == 3)
        #expect(recorded.count(DNSProxyMetrics.Name.upstreamHandshakes, of: transport, [("resumed", "true")]) >= 1)
        await transport.shutdown()
    }

    @Test func theWrongNameIsRejectedByARealServer() async throws {
        let rig = try UnboundRig()
        defer { rig.stop() }
        var tls = TLSClientConfiguration.makeStrict()
        tls.trustRoots = .pemFile(rig.caFile)
        let transport = DoTUpstreamTransport(
            configuration: .init(
                upstream: UpstreamAddress(host: "127.0.0.1", port: rig.dotPort, authenticationName: "dns.example")
            ),
            tlsContext: try TLSClientContext(configuration: tls)
        )
        do {
            _ = try await transport.send(
                DNSMessage.query(name: "a.test.", type: .a, id: 1).encoded(),
                deadline: .now() + .seconds(5),
                on: group.next()
            ).get()
            Issue.record("a certificate for dns.test was accepted for dns.example")
        } catch let error as UpstreamError {
            #expect(error.code == .certificateRejected, "\(error)")
        }
        await transport.shutdown()
    }
}
