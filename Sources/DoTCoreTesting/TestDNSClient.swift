import DoTCore
import NIOCore
import NIOPosix

/// A plain DNS client for loopback tests: one UDP exchange, or several framed queries pipelined in a
/// single TCP write with the replies collected in arrival order.
public enum TestDNSClient {
    /// The error thrown when no reply arrives in time.
    public struct NoReply: Error {}

    /// Sends raw bytes over UDP and returns the first datagram that comes back.
    ///
    /// - Parameter source: The local address to send from (for example 127.0.0.2, to be another client).
    public static func udp(
        _ message: ByteBuffer,
        port: Int,
        host: String = "127.0.0.1",
        source: String = "127.0.0.1",
        timeout: TimeAmount = .seconds(3),
        group: any EventLoopGroup
    ) async throws -> ByteBuffer {
        let loop = group.next()
        let reply = loop.makePromise(of: ByteBuffer.self)
        let channel = try await DatagramBootstrap(group: loop)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(Collector(reply))
                }
            }
            .bind(host: source, port: 0).get()
        defer { channel.close(promise: nil) }
        try await channel.writeAndFlush(
            AddressedEnvelope(remoteAddress: SocketAddress(ipAddress: host, port: port), data: message)
        )
        let timer = loop.scheduleTask(in: timeout) { reply.fail(NoReply()) }
        defer { timer.cancel() }
        return try await reply.futureResult.get()
    }

    /// Writes every message, framed, in one TCP write, and returns `expecting` replies in the order they
    /// arrive.
    public static func tcp(
        _ messages: [ByteBuffer],
        expecting: Int? = nil,
        port: Int,
        host: String = "127.0.0.1",
        timeout: TimeAmount = .seconds(3),
        group: any EventLoopGroup
    ) async throws -> [ByteBuffer] {
        let loop = group.next()
        let done = loop.makePromise(of: [ByteBuffer].self)
        let count = expecting ?? messages.count
        let channel = try await ClientBootstrap(group: loop)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(DNSStreamFraming.makeDecoder())
                    try channel.pipeline.syncOperations.addHandler(FrameCollector(count: count, done: done))
                }
            }
            .connect(host: host, port: port).get()
        defer { channel.close(promise: nil) }
        var bytes = ByteBuffer()
        for message in messages { try DNSStreamFraming.writeFrame(message, into: &bytes) }
        try await channel.writeAndFlush(bytes)
        let timer = loop.scheduleTask(in: timeout) { done.fail(NoReply()) }
        defer { timer.cancel() }
        return try await done.futureResult.get()
    }

    private final class Collector: ChannelInboundHandler, Sendable {
        typealias InboundIn = AddressedEnvelope<ByteBuffer>
        let promise: EventLoopPromise<ByteBuffer>
        init(_ promise: EventLoopPromise<ByteBuffer>) { self.promise = promise }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) { promise.succeed(unwrapInboundIn(data).data) }
    }

    private final class FrameCollector: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        let count: Int
        let done: EventLoopPromise<[ByteBuffer]>
        var frames: [ByteBuffer] = []
        init(count: Int, done: EventLoopPromise<[ByteBuffer]>) {
            self.count = count
            self.done = done
        }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            frames.append(unwrapInboundIn(data))
            if frames.count == count { done.succeed(frames) }
        }
        func channelInactive(context: ChannelHandlerContext) { done.fail(NoReply()) }
    }
}
