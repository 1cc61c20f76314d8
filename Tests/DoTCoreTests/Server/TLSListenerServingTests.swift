import DoTCore
import DoTCoreTesting
import NIOCore
import NIOPosix
import Testing

/// The TLS listener on loopback, with dotproxy's own DoT client as the client: queries answered, the
/// certificate replaced for new connections only, and the per-client connection cap.
@Suite(.serialized) struct TLSListenerServingTests {
    let group = MultiThreadedEventLoopGroup.singleton

    /// Answers every query NXDOMAIN at once.
    struct ImmediateHandler: DNSQueryHandler {
        func handle(_ query: DNSClientQuery, on eventLoop: any EventLoop) -> EventLoopFuture<ByteBuffer?> {
            var reply = query.message
            // QR set, NXDOMAIN: enough of an answer for the client to match.
            let flags = reply.getInteger(at: reply.readerIndex + 2, as: UInt16.self) ?? 0
            reply.setInteger(flags | 0x8003, at: reply.readerIndex + 2)
            return eventLoop.makeSucceededFuture(reply)
        }
    }

    static func context(_ identity: TestCertificates.Identity) throws -> TLSServerContext {
        try TLSServerContext(certificateChainFile: identity.certificateFile, privateKeyFile: identity.keyFile)
    }

    func client(port: Int) throws -> DoTUpstreamTransport {
        var tls = TLSClientConfiguration.makeStrict()
        tls.trustRoots = .pemFile(TestCertificates.caFile)
        return DoTUpstreamTransport(
            configuration: .init(
                upstream: UpstreamAddress(
                    host: "127.0.0.1",
                    port: port,
                    authenticationName: TestCertificates.serverName
                )
            ),
            tlsContext: try TLSClientContext(configuration: tls)
        )
    }

    func withServer(
        configure: (inout DNSProxyServer.Configuration) -> Void = { _ in },
        recorded: RecordedMetrics = RecordedMetrics(),
        _ body: (DNSProxyServer, Int) async throws -> Void
    ) async throws {
        var configuration = DNSProxyServer.Configuration(
            listenAddresses: [try SocketAddress(ipAddress: "127.0.0.1", port: 0)]
        )
        configuration.tlsListenAddresses = [try SocketAddress(ipAddress: "127.0.0.1", port: 0)]
        configure(&configuration)
        let server = DNSProxyServer(
            configuration: configuration,
            handler: ImmediateHandler(),
            eventLoopGroup: group,
            tlsContext: try Self.context(TestCertificates.server),
            metrics: recorded.metrics
        )
        try await server.serving { _, _ in
            let port = try #require(try await server.tlsListeningAddresses().first?.port)
            try await body(server, port)
        }
    }

    static func query(id: UInt16) throws -> ByteBuffer {
        try DNSMessage.query(name: "a.test.", type: .a, id: id).encoded()
    }

    @Test func queriesAreAnsweredOverTLSAndANewPairServesOnlyNewConnections() async throws {
        let recorded = RecordedMetrics()
        try await withServer(recorded: recorded) { server, port in
            let first = try client(port: port)
            let loop = group.next()
            let reply = try await first.send(try Self.query(id: 41), timeout: .seconds(5), on: loop)
            #expect(try DNSMessage(decoding: reply).header.responseCode == .nameError)

            // A certificate that does not name dns.test: new handshakes fail, the open connection goes on.
            server.replaceTLSContext(try Self.context(TestCertificates.wrongName))
            let again = try await first.send(try Self.query(id: 42), timeout: .seconds(5), on: loop)
            #expect(try DNSMessage(decoding: again).header.id == 42)
            let second = try client(port: port)
            await #expect(throws: UpstreamError.self) {
                _ = try await second.send(try Self.query(id: 43), timeout: .seconds(5), on: loop)
            }
            server.replaceTLSContext(try Self.context(TestCertificates.server))
            let third = try client(port: port)
            let back = try await third.send(try Self.query(id: 44), timeout: .seconds(5), on: loop)
            #expect(try DNSMessage(decoding: back).header.id == 44)
            for transport in [first, second, third] { await transport.shutdown() }
        }
        #expect(recorded.count(DNSProxyMetrics.Name.clientTLSAccepted) == 3)
    }

    @Test func connectionsOverThePerClientCapAreRefusedAndCounted() async throws {
        let recorded = RecordedMetrics()
        let configure: (inout DNSProxyServer.Configuration) -> Void = {
            $0.maximumTCPConnectionsPerClient = 2
            $0.tlsHandshakeTimeout = .seconds(1)
        }
        try await withServer(configure: configure, recorded: recorded) { _, port in
            var channels: [any Channel] = []
            for _ in 0..<5 {
                channels.append(try await ClientBootstrap(group: group).connect(host: "127.0.0.1", port: port).get())
            }
            // The server closes the refused ones at accept, the others at the handshake deadline.
            for channel in channels { try await channel.closeFuture.get() }
        }
        #expect(
            recorded.count(DNSProxyMetrics.Name.clientConnectionsRefused, [("transport", "tls"), ("reason", "limit")])
                == 3
        )
        #expect(recorded.count(DNSProxyMetrics.Name.clientTLSAccepted) == 2)
    }
}
