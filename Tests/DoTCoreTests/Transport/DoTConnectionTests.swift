import DoTCoreTesting
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import Testing

@testable import DoTCore

/// One upstream connection in memory: its channel is an `EmbeddedChannel` standing for the TLS
/// plaintext, so what it writes and when it asks for ACKs can be read step by step.
@Suite struct DoTConnectionTests {
    /// A connection on its own channel, past the handshake, and its connection set (which connections do not
    /// keep alive).
    func makeConnection(
        idleTimeout: TimeAmount = .seconds(10)
    ) throws -> (EmbeddedChannel, DoTConnection, DoTConnectionSet) {
        let channel = EmbeddedChannel()
        let connections = DoTConnectionSet(
            eventLoop: channel.embeddedEventLoop,
            configuration: DoTUpstreamTransport.Configuration(
                upstream: UpstreamAddress(host: "127.0.0.1", port: 853, authenticationName: "dns.test"),
                idleTimeout: idleTimeout
            ),
            tlsContext: try TLSClientContext(configuration: TestCertificates.clientConfiguration()),
            resumptionData: NIOLockedValueBox(nil),
            metrics: DNSProxyMetrics().upstream("127.0.0.1:853"),
            logger: Logger(label: "test")
        )
        let connection = DoTConnection(owner: connections, identifier: 1, maximumQueries: nil, idleTimeout: idleTimeout)
        try channel.pipeline.syncOperations.addHandler(connection)
        connection.connected()
        return (channel, connection, connections)
    }

    func makeQuery(id: UInt16, replies: NIOLockedValueBox<[ByteBuffer]>) throws -> DoTQuery {
        let message = try DNSMessage.query(name: "a.test.", type: .a, id: id).encoded()
        return DoTQuery(
            query: try ParsedDNSMessage(message),
            paddingBlockSize: 128,
            deadline: .now() + .seconds(2),
            completion: { result in
                if case .success(let reply) = result { replies.withLockedValue { $0.append(reply.buffer) } }
            }
        )
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
        let (channel, connection, connections) = try makeConnection()
        defer { withExtendedLifetime(connections) {} }
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

    @Test func underLoadTheAckWaitsForTheNextWriteThenGoesOnItsOwn() throws {
        let (channel, connection, connections) = try makeConnection()
        defer { withExtendedLifetime(connections) {} }
        let replies = NIOLockedValueBox<[ByteBuffer]>([])
        for id in 0..<UInt16(DoTConnection.ackDeferralThreshold) {
            connection.enqueue(try makeQuery(id: id, replies: replies))
        }
        channel.embeddedEventLoop.run()

        // A burst of reads at the threshold: the ACK is owed, not sent.
        channel.pipeline.fireChannelReadComplete()
        #expect(connection.immediateAcks == 0)

        // The next query's flush carries it: nothing is sent when the check fires.
        channel.embeddedEventLoop.advanceTime(by: .nanoseconds(DoTConnection.ackDeferral.nanoseconds / 2))
        connection.enqueue(try makeQuery(id: 0x100, replies: replies))
        channel.embeddedEventLoop.run()
        channel.embeddedEventLoop.advanceTime(by: DoTConnection.ackDeferral)
        #expect(connection.immediateAcks == 0)

        // No query follows the next burst: the ACK goes on its own once the deferral is over, once.
        channel.pipeline.fireChannelReadComplete()
        channel.pipeline.fireChannelReadComplete()
        channel.embeddedEventLoop.advanceTime(by: DoTConnection.ackDeferral - .microseconds(1))
        #expect(connection.immediateAcks == 0)
        channel.embeddedEventLoop.advanceTime(by: .microseconds(1))
        #expect(connection.immediateAcks == 1)
        channel.embeddedEventLoop.advanceTime(by: DoTConnection.ackDeferral)
        #expect(connection.immediateAcks == 1)
        _ = try? channel.finish()
    }

    /// Sends one query and answers it at once.
    func answerOne(
        on channel: EmbeddedChannel,
        _ connection: DoTConnection,
        replies: NIOLockedValueBox<[ByteBuffer]>
    ) throws {
        connection.enqueue(try makeQuery(id: 7, replies: replies))
        channel.embeddedEventLoop.run()
        try channel.writeInbound(reply(to: try #require(try channel.readOutbound(as: ByteBuffer.self))))
    }

    /// The idle timer is armed once and not reset per query: a connection used again before it fires
    /// is checked again a full timeout after its last reply, and one busy at the check is not closed.
    @Test func closesOnlyAfterAFullTimeoutWithNothingInFlight() throws {
        let (channel, connection, connections) = try makeConnection(idleTimeout: .seconds(10))
        defer { withExtendedLifetime(connections) {} }
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 853)).wait()
        let replies = NIOLockedValueBox<[ByteBuffer]>([])
        try answerOne(on: channel, connection, replies: replies)  // idle from 0 s

        channel.embeddedEventLoop.advanceTime(by: .seconds(6))
        try answerOne(on: channel, connection, replies: replies)  // idle from 6 s
        channel.embeddedEventLoop.advanceTime(by: .seconds(4))  // the first check, at 10 s
        #expect(channel.isActive)
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(5_999))
        #expect(channel.isActive)

        // A query in flight at the check (16 s) keeps the connection; its reply starts the timeout again.
        connection.enqueue(try makeQuery(id: 8, replies: replies))
        channel.embeddedEventLoop.run()
        let frame = try #require(try channel.readOutbound(as: ByteBuffer.self))
        channel.embeddedEventLoop.advanceTime(by: .seconds(20))
        #expect(channel.isActive)
        try channel.writeInbound(reply(to: frame))  // idle from 36 s
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(9_999))
        #expect(channel.isActive)
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(1))
        #expect(!channel.isActive)
        #expect(replies.withLockedValue { $0.count } == 3)
    }
}
