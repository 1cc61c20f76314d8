import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import Testing

@testable import DoTCore

/// How the client handlers flush: replies produced together leave in one flush. Driven on an
/// `EmbeddedChannel`, where unflushed writes are invisible to `readOutbound`.
@Suite struct ReplyBatchingTests {
    /// Answers "hit" queries at once and holds every other query until the test completes it.
    final class HeldQueryHandler: DNSQueryHandler, Sendable {
        let held = NIOLockedValueBox<[(query: ByteBuffer, promise: EventLoopPromise<ByteBuffer?>)]>([])

        func handle(_ query: DNSClientQuery, on eventLoop: any EventLoop) -> EventLoopFuture<ByteBuffer?> {
            switch respond(to: query, on: eventLoop) {
            case .now(let reply): eventLoop.makeSucceededFuture(reply)
            case .later(let reply): reply
            }
        }

        func respond(to query: DNSClientQuery, on eventLoop: any EventLoop) -> DNSQueryResponse {
            if query.message.getInteger(at: query.message.readerIndex, as: UInt16.self)! < 100 {
                return .now(query.message)
            }
            let promise = eventLoop.makePromise(of: ByteBuffer?.self)
            held.withLockedValue { $0.append((query.message, promise)) }
            return .later(promise.futureResult)
        }

        /// Completes the first `count` held queries (all by default) with their own bytes as the reply.
        func answer(first count: Int = .max) {
            let waiting = held.withLockedValue {
                held -> [(query: ByteBuffer, promise: EventLoopPromise<ByteBuffer?>)] in
                let first = Array(held.prefix(count))
                held.removeFirst(first.count)
                return first
            }
            for entry in waiting { entry.promise.succeed(entry.query) }
        }
    }

    static let client = try! SocketAddress(ipAddress: "192.0.2.7", port: 5300)

    func datagram(id: UInt16) throws -> AddressedEnvelope<ByteBuffer> {
        AddressedEnvelope(
            remoteAddress: Self.client,
            data: try DNSMessage.query(name: "a.test.", type: .a, id: id).encoded()
        )
    }

    func flushes(of channel: EmbeddedChannel) -> FlushCounter {
        try! channel.pipeline.syncOperations.handler(type: FlushCounter.self)
    }

    /// Counts flushes that reach the head of the pipeline.
    final class FlushCounter: ChannelOutboundHandler {
        typealias OutboundIn = Any
        var count = 0
        func flush(context: ChannelHandlerContext) {
            count += 1
            context.flush()
        }
    }

    @Test func upstreamAnswersCompletedInOneTickLeaveInOneFlush() throws {
        let queries = HeldQueryHandler()
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandlers([FlushCounter(), UDPListenerHandler(handler: queries)])
        for id in [100, 101, 102] as [UInt16] { try channel.writeInbound(try datagram(id: id)) }
        #expect(queries.held.withLockedValue { $0.count } == 3)

        queries.answer()
        #expect(try channel.readOutbound(as: AddressedEnvelope<ByteBuffer>.self) == nil, "written, not yet flushed")
        channel.embeddedEventLoop.run()
        let ids = try (0..<3).map { _ in
            try #require(try channel.readOutbound(as: AddressedEnvelope<ByteBuffer>.self)).data.getInteger(
                at: 0,
                as: UInt16.self
            )
        }
        #expect(ids == [100, 101, 102])
        #expect(flushes(of: channel).count == 1)
        #expect(try channel.finish().isClean)
    }

    @Test func upstreamAnswersUnderLoadLingerForTheNextOnes() throws {
        let queries = HeldQueryHandler()
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandlers([FlushCounter(), UDPListenerHandler(handler: queries)])
        let waiting = UDPListenerHandler.lingerThreshold + 4
        for id in 100..<100 + waiting { try channel.writeInbound(try datagram(id: UInt16(id))) }
        let before = flushes(of: channel).count

        // Two answers in while enough queries still wait: they linger, past the end of the tick.
        queries.answer(first: 2)
        channel.embeddedEventLoop.run()
        #expect(try channel.readOutbound(as: AddressedEnvelope<ByteBuffer>.self) == nil, "lingering")
        channel.embeddedEventLoop.advanceTime(by: UDPListenerHandler.replyLinger)
        #expect(
            try channel.readOutbound(as: AddressedEnvelope<ByteBuffer>.self)?.data.getInteger(at: 0, as: UInt16.self)
                == 100
        )
        #expect(
            try channel.readOutbound(as: AddressedEnvelope<ByteBuffer>.self)?.data.getInteger(at: 0, as: UInt16.self)
                == 101
        )
        #expect(flushes(of: channel).count == before + 1, "both in one flush")

        // The rest: the first ones linger again, and once fewer than the threshold are left waiting,
        // the next answer asks for the end of the tick, which flushes them all at once.
        queries.answer()
        channel.embeddedEventLoop.run()
        var ids: [UInt16] = []
        while let reply = try channel.readOutbound(as: AddressedEnvelope<ByteBuffer>.self) {
            ids.append(reply.data.getInteger(at: 0, as: UInt16.self)!)
        }
        #expect(ids == (102..<100 + waiting).map { UInt16($0) })
        #expect(flushes(of: channel).count == before + 2)
        channel.embeddedEventLoop.advanceTime(by: UDPListenerHandler.replyLinger)
        #expect(flushes(of: channel).count == before + 2, "no second flush when nothing is pending")
        #expect(try channel.finish().isClean)
    }

    @Test func aReadFlushesLingeringAnswersWithItsOwnReplies() throws {
        let queries = HeldQueryHandler()
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandlers([FlushCounter(), UDPListenerHandler(handler: queries)])
        for id in 100..<100 + UDPListenerHandler.lingerThreshold + 2 {
            try channel.writeInbound(try datagram(id: UInt16(id)))
        }
        let before = flushes(of: channel).count
        queries.answer(first: 1)
        channel.embeddedEventLoop.run()
        #expect(try channel.readOutbound(as: AddressedEnvelope<ByteBuffer>.self) == nil, "lingering")

        // A cache hit read before the linger ends takes the lingering answer out with it.
        try channel.writeInbound(try datagram(id: 1))
        #expect(
            try channel.readOutbound(as: AddressedEnvelope<ByteBuffer>.self)?.data.getInteger(at: 0, as: UInt16.self)
                == 100
        )
        #expect(
            try channel.readOutbound(as: AddressedEnvelope<ByteBuffer>.self)?.data.getInteger(at: 0, as: UInt16.self)
                == 1
        )
        #expect(flushes(of: channel).count == before + 1)
        channel.embeddedEventLoop.advanceTime(by: UDPListenerHandler.replyLinger)
        #expect(flushes(of: channel).count == before + 1, "the linger's end finds nothing left to flush")
    }

    @Test func hitsOfOneReadLeaveInOneFlushAtReadComplete() throws {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandlers([
            FlushCounter(), UDPListenerHandler(handler: HeldQueryHandler()),
        ])
        // writeInbound fires channelReadComplete after each message; deliver two reads, then complete.
        channel.pipeline.syncOperations.fireChannelRead(NIOAny(try datagram(id: 1)))
        channel.pipeline.syncOperations.fireChannelRead(NIOAny(try datagram(id: 2)))
        #expect(try channel.readOutbound(as: AddressedEnvelope<ByteBuffer>.self) == nil)
        channel.pipeline.syncOperations.fireChannelReadComplete()
        #expect(try channel.readOutbound(as: AddressedEnvelope<ByteBuffer>.self)?.remoteAddress == Self.client)
        #expect(try channel.readOutbound(as: AddressedEnvelope<ByteBuffer>.self) != nil)
        #expect(flushes(of: channel).count == 1)
        channel.embeddedEventLoop.run()
        #expect(flushes(of: channel).count == 1, "no second flush when nothing is pending")
    }

    @Test func tcpAnswersCompletedTogetherLeaveInOneFlush() throws {
        let queries = HeldQueryHandler()
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandlers([
            FlushCounter(),
            TCPClientConnectionHandler(handler: queries, limits: TCPConnectionLimitsTests.limits(maximumInFlight: 10)),
        ])
        try channel.connect(to: Self.client).wait()
        for id in [200, 201] as [UInt16] { try channel.writeInbound(try TCPQueryFramingTests.framed(id: id)) }
        let before = flushes(of: channel).count
        queries.answer()
        channel.embeddedEventLoop.run()
        // Each reply behind its length.
        #expect(try channel.readOutbound(as: ByteBuffer.self)?.getInteger(at: 2, as: UInt16.self) == 200)
        #expect(try channel.readOutbound(as: ByteBuffer.self)?.getInteger(at: 2, as: UInt16.self) == 201)
        #expect(flushes(of: channel).count == before + 1)
    }
}
