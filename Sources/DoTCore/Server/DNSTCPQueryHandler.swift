import NIOCore

/// Serves one client TCP connection: framed queries in, replies out as each completes (out of order,
/// RFC 7766 §6.2.1.1), with a cap on queries in flight and an idle timeout. Replies are flushed in
/// batches (see `ReadBatchedWriter`).
///
/// When the cap is reached the handler stops reading, so a client that pipelines without limit is
/// slowed down rather than buffered in memory.
final class DNSTCPQueryHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let handler: any DNSQueryHandler
    private let maximumInFlight: Int
    private var inFlight = 0
    private var readPending = false
    private var clientAddress: SocketAddress?
    private let writer = ReadBatchedWriter()
    let drain = DrainTracker()

    init(handler: any DNSQueryHandler, maximumInFlight: Int) {
        self.handler = handler
        self.maximumInFlight = maximumInFlight
    }

    func channelActive(context: ChannelHandlerContext) {
        clientAddress = context.remoteAddress
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let client = clientAddress ?? context.remoteAddress else { return }
        let query = DNSClientQuery(message: unwrapInboundIn(data), client: client, transport: .tcp)
        writer.readStarted()
        switch handler.respond(to: query, on: context.eventLoop) {
        case .now(let reply):
            if let reply { writer.write(wrapOutboundOut(reply), context: context) }
        case .later(let reply):
            inFlight += 1
            drain.started()
            let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
            reply.hop(to: context.eventLoop).assumeIsolated().whenComplete { [self] result in
                inFlight -= 1
                drain.finished()
                let context = bound.value
                if case .success(let reply?) = result, context.channel.isActive {
                    writer.write(wrapOutboundOut(reply), context: context)
                }
                if readPending && inFlight < maximumInFlight {
                    readPending = false
                    context.read()
                }
            }
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        writer.readComplete(context: context)
        context.fireChannelReadComplete()
    }

    func read(context: ChannelHandlerContext) {
        if inFlight >= maximumInFlight {
            readPending = true
        } else {
            context.read()
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent, inFlight == 0 {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A broken frame or a reset client: close this connection only.
        context.close(promise: nil)
    }
}

@available(*, unavailable)
extension DNSTCPQueryHandler: Sendable {}
