import NIOCore

/// Reads client datagrams, asks the query handler, and writes each reply back to its sender.
///
/// Replies are written as they complete and flushed in batches (see `ReadBatchedWriter`): the cache
/// hits of one read together, and the upstream answers of one event-loop tick together, each batch in
/// one `sendmmsg`. Under load (``lingerThreshold`` or more queries waiting for the upstream) an
/// upstream answer lingers up to ``replyLinger`` for the answers of the next upstream reads: every
/// batch wakes the client's receiving thread, and on a loaded machine those wake-ups were the largest
/// single cost of a miss. At light load answers leave at once. Sets how many reads the socket gets per
/// wake-up (``DatagramReadBudget``). Counts queries in flight so the server can drain on shutdown.
final class UDPListenerHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    typealias OutboundOut = AddressedEnvelope<ByteBuffer>

    /// How long an upstream answer may wait for others to share its `sendmmsg`, under load: a few
    /// percent of a reply's time through the proxy then, and nothing at light load.
    static let replyLinger = TimeAmount.microseconds(50)
    /// The queries still waiting for the upstream, once an answer is in, from which on it lingers.
    static let lingerThreshold = 8

    private let handler: any DNSQueryHandler
    let drain = DrainTracker()
    private let writer = ReadBatchedWriter()
    private var readBudget = DatagramReadBudget(
        datagramsPerRead: DNSProxyServer.datagramsPerRead,
        readsUnderLoad: DNSProxyServer.readsPerWakeUpUnderLoad
    )

    init(handler: any DNSQueryHandler) {
        self.handler = handler
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        let query = DNSClientQuery(message: envelope.data, client: envelope.remoteAddress, clientProtocol: .udp)
        readBudget.datagramRead()
        writer.readStarted()
        switch handler.respond(to: query, on: context.eventLoop) {
        case .now(let reply):
            if let reply {
                writer.write(
                    wrapOutboundOut(AddressedEnvelope(remoteAddress: envelope.remoteAddress, data: reply)),
                    context: context
                )
            }
        case .later(let reply):
            drain.started()
            let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
            // The address only: the envelope's data would keep the whole read buffer while the query waits.
            let client = envelope.remoteAddress
            reply.hop(to: context.eventLoop).assumeIsolated().whenComplete { [self] result in
                drain.finished()
                guard case .success(let reply?) = result else { return }
                let linger = drain.inFlight >= Self.lingerThreshold ? Self.replyLinger : nil
                writer.write(
                    wrapOutboundOut(AddressedEnvelope(remoteAddress: client, data: reply)),
                    context: bound.value,
                    linger: linger
                )
            }
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        writer.readComplete(context: context)
        if let reads = readBudget.wakeUpEnded() {
            // Only a closed channel refuses; it reads no more anyway.
            try? context.channel.syncOptions?.setOption(.maxMessagesPerRead, value: reads)
        }
        context.fireChannelReadComplete()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A UDP socket survives errors such as ICMP port unreachable from a departed client.
    }
}

@available(*, unavailable)
extension UDPListenerHandler: Sendable {}

/// Counts work in flight on one event loop and completes a promise when it reaches zero.
final class DrainTracker {
    /// The work started and not yet finished.
    private(set) var inFlight = 0
    private var waiters: [EventLoopPromise<Void>] = []

    func started() { inFlight += 1 }

    func finished() {
        inFlight -= 1
        if inFlight == 0 {
            let waiting = waiters
            waiters.removeAll()
            waiting.forEach { $0.succeed() }
        }
    }

    /// Completes when nothing is in flight.
    func whenIdle(on eventLoop: any EventLoop) -> EventLoopFuture<Void> {
        if inFlight == 0 { return eventLoop.makeSucceededVoidFuture() }
        let promise = eventLoop.makePromise(of: Void.self)
        waiters.append(promise)
        return promise.futureResult
    }
}
