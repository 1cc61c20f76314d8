import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// Re-arms TCP_QUICKACK after every read until the connection has carried its first replies.
///
/// On a fresh TLS 1.3 connection the server sends its session tickets and then the first reply; with
/// the server's Nagle algorithm waiting for our ACK and our delayed ACK waiting up to 40 ms, the first
/// answer arrives about 40 ms late. Quick ACKs during the first exchanges remove that wait. Linux
/// clears the option by itself, so it is set again after each read, for a bounded number of reads.
final class QuickAckHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private var readsLeft: Int

    init(reads: Int = 8) { self.readsLeft = reads }

    func channelActive(context: ChannelHandlerContext) {
        arm(context)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.fireChannelRead(data)
        readsLeft -= 1
        if readsLeft > 0 {
            arm(context)
        } else {
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        }
    }

    private func arm(_ context: ChannelHandlerContext) {
        #if os(Linux)
        _ = context.channel.setOption(ChannelOptions.socket(SocketOptionLevel(IPPROTO_TCP), SocketOptionName(TCP_QUICKACK)), value: 1)
        #endif
    }
}
