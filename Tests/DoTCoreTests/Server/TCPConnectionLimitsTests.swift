import NIOCore
import NIOEmbedded
import Testing

@testable import DoTCore

/// What one client TCP connection may hold and for how long: queries in progress (hits included),
/// unsent replies, a partial query, idle time when slots run short. On an `EmbeddedChannel` and its
/// clock.
@Suite struct TCPConnectionLimitsTests {
    static func limits(
        maximumInFlight: Int = 100,
        idleTimeout: TimeAmount = .seconds(10),
        busyIdleTimeout: TimeAmount = .seconds(1),
        queryReadTimeout: TimeAmount = .seconds(5),
        writeStallTimeout: TimeAmount = .seconds(10)
    ) -> TCPClientConnectionHandler.Limits {
        .init(
            maximumInFlight: maximumInFlight,
            idleTimeout: idleTimeout,
            busyIdleTimeout: busyIdleTimeout,
            queryReadTimeout: queryReadTimeout,
            writeStallTimeout: writeStallTimeout
        )
    }

    func connect(
        _ limits: TCPClientConnectionHandler.Limits = Self.limits(),
        handler: any DNSQueryHandler = ReplyBatchingTests.HeldQueryHandler(),
        slots: TCPConnectionLimiter? = nil
    ) throws -> EmbeddedChannel {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(
            TCPClientConnectionHandler(handler: handler, limits: limits, slots: slots)
        )
        try channel.connect(to: TCPIdleTimeoutTests.client).wait()
        return channel
    }

    /// `count` framed queries (IDs below 100: answered at once, as cache hits are) in one buffer.
    static func burst(_ count: Int) throws -> ByteBuffer {
        var stream = ByteBuffer()
        for index in 0..<count { stream.writeImmutableBuffer(try TCPQueryFramingTests.framed(id: UInt16(index % 100))) }
        return stream
    }

    func replies(_ channel: EmbeddedChannel) throws -> Int {
        var count = 0
        while try channel.readOutbound(as: ByteBuffer.self) != nil { count += 1 }
        return count
    }

    /// Passes writes on but completes their promises only when told: a kernel that has not taken
    /// the bytes yet.
    final class HeldWrites: ChannelOutboundHandler {
        typealias OutboundIn = ByteBuffer
        var promises: [EventLoopPromise<Void>] = []

        func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
            if let promise { promises.append(promise) }
            context.write(data, promise: nil)
        }

        func release() {
            let held = promises
            promises.removeAll()
            for promise in held { promise.succeed() }
        }
    }

    @Test func cacheHitsCountAgainstTheInFlightCapUntilTheirRepliesAreSent() throws {
        let channel = EmbeddedChannel()
        let kernel = HeldWrites()
        try channel.pipeline.syncOperations.addHandler(kernel)
        try channel.pipeline.syncOperations.addHandler(
            TCPClientConnectionHandler(
                handler: ReplyBatchingTests.HeldQueryHandler(),
                limits: Self.limits(maximumInFlight: 10)
            )
        )
        try channel.connect(to: TCPIdleTimeoutTests.client).wait()
        // 1,000 hits in one read: the handler answers ten, then waits for them to be sent.
        channel.pipeline.syncOperations.fireChannelRead(NIOAny(try Self.burst(1_000)))
        channel.pipeline.syncOperations.fireChannelReadComplete()
        #expect(try replies(channel) == 10)
        channel.embeddedEventLoop.run()
        #expect(try replies(channel) == 0, "no more while ten replies are unsent")
        // Sent: the next ten are taken from what was read.
        for _ in 0..<5 {
            kernel.release()
            channel.embeddedEventLoop.run()
            #expect(try replies(channel) == 10)
        }
        for _ in 0..<200 {
            kernel.release()
            channel.embeddedEventLoop.run()
        }
        #expect(try replies(channel) == 940)
        #expect(channel.isActive)
    }

    @Test func aClientThatDoesNotReadIsNotReadAndIsClosedAfterTheStallTimeout() throws {
        let channel = try connect()
        try channel.writeInbound(try Self.burst(3))
        #expect(try replies(channel) == 3)
        // The kernel's buffer and then the channel's fill: the channel turns unwritable.
        channel.isWritable = false
        channel.pipeline.fireChannelWritabilityChanged()
        try channel.writeInbound(try Self.burst(50))
        #expect(try replies(channel) == 0, "no query is taken while replies cannot leave")
        channel.embeddedEventLoop.advanceTime(by: .seconds(9))
        #expect(channel.isActive)
        channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        #expect(!channel.isActive)
    }

    @Test func aClientThatReadsAgainIsServedTheQueriesThatWaited() throws {
        let channel = try connect()
        channel.isWritable = false
        channel.pipeline.fireChannelWritabilityChanged()
        try channel.writeInbound(try Self.burst(5))
        #expect(try replies(channel) == 0)
        channel.embeddedEventLoop.advanceTime(by: .seconds(8))
        channel.isWritable = true
        channel.pipeline.fireChannelWritabilityChanged()
        #expect(try replies(channel) == 5)
        // The stall ended: no close at the old deadline.
        channel.embeddedEventLoop.advanceTime(by: .seconds(5))
        #expect(channel.isActive)
    }

    @Test func aQueryMustArriveWholeWithinTheReadTimeoutOfItsFirstOctet() throws {
        let channel = try connect()
        var frame = try TCPQueryFramingTests.framed(id: 1)
        // One octet a second: each resets nothing.
        for _ in 0..<4 {
            try channel.writeInbound(frame.readSlice(length: 1)!)
            channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        }
        #expect(channel.isActive)
        channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        #expect(!channel.isActive, "closed five seconds after the query's first octet")
    }

    @Test func aMaximalLengthPrefixAndATrickleAreClosedWithinTheReadTimeout() throws {
        let channel = try connect()
        try channel.writeInbound(ByteBuffer(bytes: [0xFF, 0xFF, 0x12]))
        channel.embeddedEventLoop.advanceTime(by: .seconds(4))
        try channel.writeInbound(ByteBuffer(bytes: [0x34]))
        channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        #expect(!channel.isActive)
    }

    @Test func wholeQueriesKeepAConnectionAliveAndPartialOnesDoNot() throws {
        let channel = try connect()
        for _ in 0..<3 {
            channel.embeddedEventLoop.advanceTime(by: .seconds(9))
            try channel.writeInbound(try Self.burst(1))
        }
        let answered = try replies(channel)
        #expect(channel.isActive && answered == 3)
        // A complete query then a partial one within the read timeout, then silence: the idle
        // timeout counts from the last whole query, and the partial one closes it first.
        try channel.writeInbound(ByteBuffer(bytes: [0x00]))
        channel.embeddedEventLoop.advanceTime(by: .seconds(5))
        #expect(!channel.isActive)
    }

    @Test func theIdleTimeoutShrinksWhileMoreThanHalfTheSlotsAreTaken() throws {
        let slots = TCPConnectionLimiter(maximumTotal: 4, maximumPerClient: 4)
        let client = ClientAddress(IPv4Address(192, 0, 2, 7))
        let quiet = try connect(slots: slots)
        quiet.embeddedEventLoop.advanceTime(by: .seconds(2))
        #expect(quiet.isActive, "two of four slots free: the full timeout")
        for _ in 0..<3 { #expect(slots.admit(client)) }
        #expect(slots.isBusy)
        // The next look at the connection, at the latest one idle timeout later, closes it.
        quiet.embeddedEventLoop.advanceTime(by: .seconds(8))
        #expect(!quiet.isActive)
        // A new connection under pressure gets the short timeout from the start.
        let newcomer = try connect(slots: slots)
        newcomer.embeddedEventLoop.advanceTime(by: .milliseconds(900))
        #expect(newcomer.isActive)
        newcomer.embeddedEventLoop.advanceTime(by: .seconds(9))
        #expect(!newcomer.isActive)
    }
}
