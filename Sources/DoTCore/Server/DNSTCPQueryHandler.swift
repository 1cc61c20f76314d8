import NIOCore

/// Serves one client TCP connection: framed queries in, replies out as each completes (out of order,
/// RFC 7766 §6.2.1.1), with a cap on queries in flight and an idle timeout. Replies are flushed in
/// batches (see `ReadBatchedWriter`).
///
/// It reads the connection's bytes and does the two-octet framing itself (``DNSStreamFraming``), as
/// the upstream connection does, rather than behind NIO's generic decoder and encoder handlers: those
/// run unspecialized here and looked up generic metadata and cast `NIOAny` on every query, about a
/// fifth of a TCP cache hit's instructions.
///
/// When the cap is reached the handler stops reading, so a client that pipelines without limit is
/// slowed down rather than buffered in memory.
///
/// The idle timer runs on the event loop's clock (so tests drive it with an `EmbeddedEventLoop`): a
/// connection closes once it has been quiet for the timeout with no query waiting for the upstream.
final class DNSTCPQueryHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let handler: any DNSQueryHandler
    private let maximumInFlight: Int
    private let idleTimeout: TimeAmount
    private var inFlight = 0
    /// The last read, or the last reply that waited for the upstream.
    private var lastActivity = NIODeadline.uptimeNanoseconds(0)
    private var idleCheck: Scheduled<Void>?
    private var readPending = false
    private var clientAddress: SocketAddress?
    private let writer = ReadBatchedWriter()
    private var frames = NIOSingleStepByteToMessageProcessor(DNSStreamFraming.makeFrameDecoder())
    let drain = DrainTracker()

    init(handler: any DNSQueryHandler, maximumInFlight: Int, idleTimeout: TimeAmount) {
        self.handler = handler
        self.maximumInFlight = maximumInFlight
        self.idleTimeout = idleTimeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { started(context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        started(context: context)
        context.fireChannelActive()
    }

    private func started(context: ChannelHandlerContext) {
        guard idleCheck == nil else { return }
        clientAddress = context.remoteAddress
        lastActivity = context.eventLoop.now
        scheduleIdleCheck(context: context, at: lastActivity + idleTimeout)
    }

    func channelInactive(context: ChannelHandlerContext) {
        idleCheck?.cancel()
        idleCheck = nil
        context.fireChannelInactive()
    }

    private func scheduleIdleCheck(context: ChannelHandlerContext, at deadline: NIODeadline) {
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        idleCheck = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [self] in
            let context = bound.value
            let now = context.eventLoop.now
            if inFlight == 0 && now >= lastActivity + idleTimeout {
                context.close(promise: nil)
            } else {
                scheduleIdleCheck(context: context, at: inFlight == 0 ? lastActivity + idleTimeout : now + idleTimeout)
            }
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        do {
            try frames.process(buffer: unwrapInboundIn(data)) { message in received(message, context: context) }
        } catch {
            errorCaught(context: context, error: error)
        }
    }

    /// One query from the client.
    private func received(_ message: ByteBuffer, context: ChannelHandlerContext) {
        guard let client = clientAddress ?? context.remoteAddress else { return }
        let query = DNSClientQuery(message: message, client: client, transport: .tcp)
        writer.readStarted()
        switch handler.respond(to: query, on: context.eventLoop) {
        case .now(let reply):
            if let reply { write(reply, context: context) }
        case .later(let reply):
            inFlight += 1
            drain.started()
            let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
            reply.hop(to: context.eventLoop).assumeIsolated().whenComplete { [self] result in
                inFlight -= 1
                drain.finished()
                let context = bound.value
                lastActivity = context.eventLoop.now
                if case .success(let reply?) = result, context.channel.isActive {
                    write(reply, context: context)
                }
                if readPending && inFlight < maximumInFlight {
                    readPending = false
                    context.read()
                }
            }
        }
    }

    /// Writes `reply` behind its two-octet length, in one buffer. A reply too long for a frame (a
    /// query handler's bug: the proxy's own are at most 65,535 octets) closes the connection, as the
    /// encoder handler did, rather than leaving the client waiting.
    private func write(_ reply: ByteBuffer, context: ChannelHandlerContext) {
        var framed = context.channel.allocator.buffer(capacity: reply.readableBytes + 2)
        do {
            try DNSStreamFraming.writeFrame(reply, into: &framed)
        } catch {
            errorCaught(context: context, error: error)
            return
        }
        writer.write(wrapOutboundOut(framed), context: context)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        lastActivity = context.eventLoop.now
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

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A broken frame or a reset client: close this connection only.
        context.close(promise: nil)
    }
}

@available(*, unavailable)
extension DNSTCPQueryHandler: Sendable {}
