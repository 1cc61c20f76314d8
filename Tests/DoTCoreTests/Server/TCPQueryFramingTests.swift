import NIOCore
import NIOEmbedded
import Testing

@testable import DoTCore

/// A client TCP connection's bytes are cut into queries wherever the reads fall (RFC 7766 §8: a
/// query may arrive in pieces, several may share one segment), and each reply leaves behind its
/// two-octet length. The server's own pipeline, on an `EmbeddedChannel`.
@Suite struct TCPQueryFramingTests {
    /// A query for a.test with `id`, behind its length.
    static func framed(id: UInt16) throws -> ByteBuffer {
        let query = try DNSMessage.query(name: "a.test.", type: .a, id: id).encoded()
        var frame = ByteBuffer()
        try DNSStreamFraming.writeFrame(query, into: &frame)
        return frame
    }

    /// The server's TCP pipeline in front of a handler that answers IDs below 100 with the query itself.
    func connect() throws -> EmbeddedChannel {
        let channel = EmbeddedChannel()
        _ = try DNSProxyServer.addClientTCPHandlers(
            to: channel.pipeline.syncOperations,
            handler: ReplyBatchingTests.HeldQueryHandler(),
            configuration: .init()
        )
        try channel.connect(to: TCPIdleTimeoutTests.client).wait()
        return channel
    }

    /// The IDs of the framed replies written so far, checking each frame's length.
    func replyIDs(_ channel: EmbeddedChannel) throws -> [UInt16] {
        var ids: [UInt16] = []
        while var reply = try channel.readOutbound(as: ByteBuffer.self) {
            #expect(reply.readInteger(as: UInt16.self) == UInt16(reply.readableBytes))
            ids.append(try #require(reply.getInteger(at: reply.readerIndex, as: UInt16.self)))
        }
        return ids
    }

    @Test func queriesSplitAcrossReadsOrSharingOneAreEachAnswered() throws {
        let channel = try connect()
        // Two whole queries and the first three octets of a third in one read.
        var stream = try Self.framed(id: 1)
        stream.writeImmutableBuffer(try Self.framed(id: 2))
        var third = try Self.framed(id: 3)
        stream.writeImmutableBuffer(third.readSlice(length: 3)!)
        try channel.writeInbound(stream)
        channel.pipeline.fireChannelReadComplete()
        #expect(try replyIDs(channel) == [1, 2])

        // The rest of the third, one octet and then the remainder.
        try channel.writeInbound(third.readSlice(length: 1)!)
        channel.pipeline.fireChannelReadComplete()
        #expect(try replyIDs(channel) == [])
        try channel.writeInbound(third)
        channel.pipeline.fireChannelReadComplete()
        #expect(try replyIDs(channel) == [3])
        #expect(channel.isActive)
        _ = try? channel.finish()
    }

    /// Answers every query with a message longer than a frame can carry.
    struct OversizedReplyHandler: DNSQueryHandler {
        func handle(_ query: DNSClientQuery, on eventLoop: any EventLoop) -> EventLoopFuture<ByteBuffer?> {
            eventLoop.makeSucceededFuture(ByteBuffer(repeating: 0, count: DNSStreamFraming.maximumMessageLength + 1))
        }
    }

    @Test func aReplyTooLongForAFrameClosesTheConnectionInsteadOfHangingTheClient() throws {
        let channel = EmbeddedChannel()
        _ = try DNSProxyServer.addClientTCPHandlers(
            to: channel.pipeline.syncOperations,
            handler: OversizedReplyHandler(),
            configuration: .init()
        )
        try channel.connect(to: TCPIdleTimeoutTests.client).wait()
        try channel.writeInbound(try Self.framed(id: 1))
        channel.embeddedEventLoop.run()
        #expect(try channel.readOutbound(as: ByteBuffer.self) == nil)
        #expect(!channel.isActive)
    }
}
