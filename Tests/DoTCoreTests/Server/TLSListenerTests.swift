import DoTCoreTesting
import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import Testing

@testable import DoTCore

/// A client DNS-over-TLS connection as the server's TLS listener builds it (GnuTLS server session,
/// handshake watch, the TCP query handler), against a GnuTLS client, over back-to-back
/// EmbeddedChannels: real TLS, no sockets, the event loop's clock.
@Suite struct TLSListenerTests {
    /// Answers every query at once: NXDOMAIN, with the proxy's OPT when the query had one.
    struct ImmediateHandler: DNSQueryHandler {
        func handle(_ query: DNSClientQuery, on eventLoop: any EventLoop) -> EventLoopFuture<ByteBuffer?> {
            let view = try? DNSMessageView(query.message)
            return eventLoop.makeSucceededFuture(
                DNSResponseBuilder.reply(to: query.message, view: view, rcode: .nameError)
            )
        }
    }

    struct Connection {
        let client: EmbeddedChannel
        let server: EmbeddedChannel
        let clientEvents = GnuTLSHandlerTests.EventRecorder()
        let recorded: RecordedMetrics
    }

    static func connect(
        handshakeTimeout: TimeAmount = .seconds(5),
        context: TLSServerContext? = nil
    ) throws -> Connection {
        let recorded = RecordedMetrics()
        let context =
            try context
            ?? TLSServerContext(
                certificateChainFile: TestCertificates.server.certificateFile,
                privateKeyFile: TestCertificates.server.keyFile
            )
        let connection = Connection(client: EmbeddedChannel(), server: EmbeddedChannel(), recorded: recorded)
        let server = connection.server.pipeline.syncOperations
        try server.addHandler(GnuTLSHandler(server: context))
        try server.addHandler(
            TLSClientHandshakeHandler(
                deadline: handshakeTimeout,
                metrics: recorded.metrics,
                throttle: LogThrottle(),
                logger: .init(label: "test")
            )
        )
        var configuration = DNSProxyServer.Configuration()
        configuration.tlsHandshakeTimeout = handshakeTimeout
        _ = try DNSProxyServer.addClientTCPHandlers(
            to: server,
            handler: ImmediateHandler(),
            configuration: configuration,
            clientProtocol: .tls
        )
        try connection.server.connect(to: TCPIdleTimeoutTests.client).wait()
        return connection
    }

    func startClient(_ connection: Connection, resumptionData: [UInt8]? = nil) throws {
        let context = try TLSClientContext(configuration: TestCertificates.clientConfiguration())
        try connection.client.pipeline.syncOperations.addHandler(
            GnuTLSHandler(client: context, serverName: TestCertificates.serverName, resumptionData: resumptionData)
        )
        try connection.client.pipeline.syncOperations.addHandler(connection.clientEvents)
        try connection.client.connect(to: TCPIdleTimeoutTests.client).wait()
    }

    static func framedQuery(id: UInt16, options: [EDNSOption]) throws -> ByteBuffer {
        let query = try DNSMessage.query(name: "a.test.", type: .a, id: id, edns: EDNSRecord(options: options))
            .encoded()
        var frame = ByteBuffer()
        try DNSStreamFraming.writeFrame(query, into: &frame)
        return frame
    }

    /// The replies the client decrypted, unframed and decoded.
    static func replies(_ events: GnuTLSHandlerTests.EventRecorder) throws -> [DNSMessage] {
        var plaintext = events.plaintext
        var messages: [DNSMessage] = []
        while let frame = plaintext.readLengthPrefixedSlice(as: UInt16.self) {
            messages.append(try DNSMessage(decoding: frame))
        }
        return messages
    }

    @Test func pipelinedQueriesAreAnsweredAndTheHandshakeCounted() throws {
        let connection = try Self.connect()
        try startClient(connection)
        var queries = try Self.framedQuery(id: 1, options: [])
        var second = try Self.framedQuery(id: 2, options: [])
        queries.writeBuffer(&second)
        connection.client.writeAndFlush(queries, promise: nil)
        try GnuTLSHandlerTests.interactInMemory(connection.client, connection.server)
        let replies = try Self.replies(connection.clientEvents)
        #expect(replies.map(\.header.id) == [1, 2])
        #expect(replies.allSatisfy { $0.header.responseCode == .nameError })
        #expect(
            connection.recorded.count(
                DNSProxyMetrics.Name.clientTLSHandshakes,
                [("version", "TLS1.3"), ("resumed", "false")]
            ) == 1
        )
        // The handshake deadline no longer applies once the handshake is done.
        connection.server.embeddedEventLoop.advanceTime(by: .seconds(6))
        #expect(connection.server.isActive)
        #expect(
            connection.recorded.count(DNSProxyMetrics.Name.clientTLSHandshakeFailures, [("reason", "timeout")]) == 0
        )
    }

    @Test func aPaddedQueryGetsAReplyPaddedTo468OctetsAndKeepaliveIsAnswered() throws {
        let connection = try Self.connect()
        try startClient(connection)
        let options = [EDNSOption.padding(length: 60), .tcpKeepalive(timeout: nil)]
        connection.client.writeAndFlush(try Self.framedQuery(id: 7, options: options), promise: nil)
        connection.client.writeAndFlush(try Self.framedQuery(id: 8, options: []), promise: nil)
        try GnuTLSHandlerTests.interactInMemory(connection.client, connection.server)
        var plaintext = connection.clientEvents.plaintext
        let first = plaintext.readLengthPrefixedSlice(as: UInt16.self)
        let padded = try #require(first)
        #expect(padded.readableBytes == StreamQueryOptions.replyPaddingBlock)
        let reply = try DNSMessage(decoding: padded)
        #expect(reply.header.id == 7)
        #expect(reply.edns?.option(.tcpKeepalive)?.data == [0, 100], "the 10 s idle timeout, in 100 ms units")
        #expect(reply.edns?.option(.padding) != nil)
        // An unpadded query gets neither.
        let second = plaintext.readLengthPrefixedSlice(as: UInt16.self)
        let unpadded = try #require(second)
        let plain = try DNSMessage(decoding: unpadded)
        #expect(plain.header.id == 8)
        #expect(plain.edns?.options.isEmpty == true)
    }

    @Test func aSecondConnectionResumesWithTheTicketOfTheFirst() throws {
        let context = try TLSServerContext(
            certificateChainFile: TestCertificates.server.certificateFile,
            privateKeyFile: TestCertificates.server.keyFile
        )
        let first = try Self.connect(context: context)
        try startClient(first)
        first.client.writeAndFlush(try Self.framedQuery(id: 1, options: []), promise: nil)
        try GnuTLSHandlerTests.interactInMemory(first.client, first.server)
        let ticket = try #require(first.clientEvents.tickets.first?.resumptionData)

        let second = try Self.connect(context: context)
        try startClient(second, resumptionData: ticket)
        second.client.writeAndFlush(try Self.framedQuery(id: 2, options: []), promise: nil)
        try GnuTLSHandlerTests.interactInMemory(second.client, second.server)
        #expect(try Self.replies(second.clientEvents).map(\.header.id) == [2])
        #expect(second.clientEvents.completed.first?.resumed == true)
        #expect(
            second.recorded.count(
                DNSProxyMetrics.Name.clientTLSHandshakes,
                [("version", "TLS1.3"), ("resumed", "true")]
            ) == 1
        )
    }

    /// Found by scripts/tls_attacks.py: garbage after the handshake closed the connection but was
    /// counted nowhere.
    @Test func aRecordThatDoesNotDecryptClosesTheConnectionAndIsCounted() throws {
        let connection = try Self.connect()
        try startClient(connection)
        connection.client.writeAndFlush(try Self.framedQuery(id: 1, options: []), promise: nil)
        try GnuTLSHandlerTests.interactInMemory(connection.client, connection.server)
        #expect(connection.server.isActive)
        let garbage: [UInt8] = [0x17, 0x03, 0x03, 0x00, 0x20] + (0..<32).map { UInt8(truncatingIfNeeded: $0 &* 37) }
        try? connection.server.writeInbound(ByteBuffer(bytes: garbage))
        #expect(!connection.server.isActive)
        #expect(connection.recorded.count(DNSProxyMetrics.Name.clientTLSRecordFailures) == 1)
        #expect(connection.recorded.count(DNSProxyMetrics.Name.clientTLSHandshakeFailures, [("reason", "other")]) == 0)
    }

    @Test func aClientThatNeverSpeaksIsClosedAtTheHandshakeDeadline() throws {
        let connection = try Self.connect(handshakeTimeout: .seconds(5))
        connection.server.embeddedEventLoop.advanceTime(by: .seconds(4))
        #expect(connection.server.isActive)
        connection.server.embeddedEventLoop.advanceTime(by: .seconds(1))
        #expect(!connection.server.isActive)
        #expect(
            connection.recorded.count(DNSProxyMetrics.Name.clientTLSHandshakeFailures, [("reason", "timeout")]) == 1
        )
    }

    @Test func plainDNSSentToTheTLSPortClosesTheConnectionAsNotTLS() throws {
        let connection = try Self.connect()
        try? connection.server.writeInbound(try TCPQueryFramingTests.framed(id: 9))
        #expect(!connection.server.isActive)
        #expect(
            connection.recorded.count(DNSProxyMetrics.Name.clientTLSHandshakeFailures, [("reason", "not_tls")]) == 1
        )
        // No DNS reply leaks out in plain text.
        while let bytes = try connection.server.readOutbound(as: ByteBuffer.self) {
            #expect(bytes.getInteger(at: bytes.readerIndex + 2, as: UInt16.self) != 9)
        }
    }

    @Test func aClientThatLeavesMidHandshakeIsCountedAsClosed() throws {
        let connection = try Self.connect()
        try startClient(connection)
        // The ClientHello reaches the server; the client goes before answering the server's flight.
        while let bytes = try connection.client.readOutbound(as: ByteBuffer.self) {
            try connection.server.writeInbound(bytes)
        }
        // The peer's close, as NIO reports it: the channel goes inactive without a close of its own.
        connection.server.pipeline.fireChannelInactive()
        #expect(connection.recorded.count(DNSProxyMetrics.Name.clientTLSHandshakeFailures, [("reason", "closed")]) == 1)
    }

    @Test func theLogThrottleLetsOneMessageThroughPerIntervalAndCountsTheRest() {
        let throttle = LogThrottle(interval: .seconds(10))
        let start = NIODeadline.uptimeNanoseconds(1_000_000_000)
        #expect(throttle.admit("a", now: start) == 0)
        #expect(throttle.admit("a", now: start + .seconds(1)) == nil)
        #expect(throttle.admit("a", now: start + .seconds(2)) == nil)
        #expect(throttle.admit("b", now: start + .seconds(2)) == 0)
        #expect(throttle.admit("a", now: start + .seconds(10)) == 2)
    }
}
