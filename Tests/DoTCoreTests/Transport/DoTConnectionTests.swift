@testable import DoTCore
import DoTCoreTesting
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import Testing

/// One upstream connection in memory: its channel is an `EmbeddedChannel` standing for the TLS
/// plaintext, so what it writes and when it asks for ACKs can be read step by step.
@Suite struct DoTConnectionTests {
    /// A connection on its own channel, past the handshake, and its pool (which connections do not
    /// keep alive).
    func makeConnection() throws -> (EmbeddedChannel, DoTConnection, DoTConnectionPool) {
        let channel = EmbeddedChannel()
        let pool = DoTConnectionPool(
            eventLoop: channel.embeddedEventLoop,
            configuration: DoTUpstreamTransport.Configuration(upstream: UpstreamAddress(host: "127.0.0.1", port: 853, authenticationName: "dns.test")),
            tlsContext: try TLSClientContext(configuration: TestCertificates.clientConfiguration()), resumptionData: NIOLockedValueBox(nil),
            metrics: DNSProxyMetrics().upstream("127.0.0.1:853"), logger: Logger(label: "test"))
        let connection = DoTConnection(pool: pool, identifier: 1)
        try channel.pipeline.syncOperations.addHandler(connection)
        connection.connected()
        return (channel, connection, pool)
    }

    func makeQuery(id: UInt16, replies: NIOLockedValueBox<[ByteBuffer]>) throws -> DoTQuery {
        let message = try DNSMessage.query(name: "a.test.", type: .a, id: id).encoded()
        return DoTQuery(
            query: message, view: try DNSMessageView(message), paddingBlockSize: 128, deadline: .now() + .seconds(2),
            completion: { result in if case .success(let reply) = result { replies.withLockedValue { $0.append(reply) } } })
    }

    /// The upstream's reply to a frame the connection wrote: the same message with QR set, framed.
    func reply(to frame: ByteBuffer) -> ByteBuffer {
        var message = frame.getSlice(at: frame.readerIndex + 2, length: frame.readableBytes - 2)!
        let flags = message.getInteger(at: message.readerIndex + 2, as: UInt16.self)!
        message.setInteger(flags | DNSHeader.Flag.qr, at: message.readerIndex + 2)
        var framed = ByteBuffer()
        framed.writeInteger(UInt16(message.readableBytes))
        framed.writeBuffer(&message)
        return framed
    }

    @Test func asksForAnImmediateAckOnlyWhileRepliesAreAwaitedAndNoWriteWillCarryIt() throws {
        let (channel, connection, pool) = try makeConnection()
        defer { withExtendedLifetime(pool) {} }
        let replies = NIOLockedValueBox<[ByteBuffer]>([])

        // Nothing in flight: nothing to hurry.
        channel.pipeline.fireChannelReadComplete()
        #expect(connection.immediateAcks == 0)

        // A query written this tick: its flush carries the ACK.
        connection.enqueue(try makeQuery(id: 0x1234, replies: replies))
        channel.pipeline.fireChannelReadComplete()
        #expect(connection.immediateAcks == 0)
        channel.embeddedEventLoop.run()
        let frame = try #require(try channel.readOutbound(as: ByteBuffer.self))

        // In flight, and nothing left to write: the upstream's next reply may wait for this ACK.
        channel.pipeline.fireChannelReadComplete()
        #expect(connection.immediateAcks == 1)

        // The reply (with the client's ID restored) ends the wait: no more immediate ACKs.
        try channel.writeInbound(reply(to: frame))
        #expect(replies.withLockedValue { $0.map { $0.getInteger(at: $0.readerIndex, as: UInt16.self) } } == [0x1234])
        #expect(connection.immediateAcks == 1)
        channel.pipeline.fireChannelReadComplete()
        #expect(connection.immediateAcks == 1)
        _ = try? channel.finish()
    }
}
