import Logging
import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// One TLS connection to an upstream, carrying many queries at once.
///
/// It is the last handler of the connection's pipeline, after TLS, and cuts the decrypted bytes into
/// DNS messages itself (``DNSStreamFraming/FrameDecoder``, run in place rather than as a handler of
/// its own: one pipeline step less per read, and code the compiler specializes). Each query gets an
/// ID unique on this connection, so clients' IDs can never collide; replies are matched out of order
/// by that ID and by question, and a reply that matches no pending query is dropped and counted.
/// Writes are flushed once per event-loop tick, and ACKs are sent at once when no write will carry
/// them (see ``channelReadComplete(context:)``). Belongs to its connection set's event loop.
final class DoTConnection: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    unowned let owner: any DoTConnectionOwner
    let identifier: Int
    /// The queries, their IDs, draining and idleness: every rule about them, as a value.
    private var machine: DoTConnectionStateMachine
    private var context: ChannelHandlerContext?
    private var flushScheduled = false
    /// Replies were read since the last flush of queries, and under load their ACK was left to ride on
    /// the next one (see `channelReadComplete(context:)`).
    private var ackOwed = false
    /// Whether the check that sends an owed ACK at the latest after ``ackDeferral`` is armed.
    private var ackCheckArmed = false
    /// The idle check, armed at most once: queries do not cancel it, the state machine decides when it
    /// fires (a timer set and cancelled per query was a visible share of a miss at low rates;
    /// Docs/performance.md, "The miss path").
    private var idleCheck: Scheduled<Void>?
    let openedAt = NIODeadline.now()
    private var closeError: UpstreamError?
    private var frames = NIOSingleStepByteToMessageProcessor(DNSStreamFraming.makeFrameDecoder())
    /// How many times an ACK was asked for at once (TCP_QUICKACK).
    private(set) var immediateAcks = 0

    /// - Parameters:
    ///   - owner: Whom the connection reports to.
    ///   - identifier: The connection's number, for logs.
    ///   - maximumQueries: Queries after which the connection drains; `nil` for no limit.
    ///   - idleTimeout: How long the connection may stay without queries before it closes.
    init(owner: any DoTConnectionOwner, identifier: Int, maximumQueries: Int?, idleTimeout: TimeAmount) {
        self.owner = owner
        self.identifier = identifier
        self.machine = DoTConnectionStateMachine(
            firstID: .random(in: .min ... .max),
            maximumQueries: maximumQueries,
            idleTimeout: idleTimeout
        )
    }

    var inFlight: Int { machine.inFlight }
    var acceptsQueries: Bool { machine.acceptsQueries }

    // MARK: Queries

    func enqueue(_ query: DoTQuery) {
        switch machine.enqueue(query) {
        case .write(let query):
            if let context { write(query, context: context) }
        case .wait:
            break
        case .refuse:
            owner.resubmit(query)
        }
    }

    /// Writes a query whose connection ID is set, and makes sure a flush follows this tick.
    private func write(_ query: DoTQuery, context: ChannelHandlerContext) {
        context.write(wrapOutboundOut(query.frame), promise: nil)
        if !flushScheduled {
            flushScheduled = true
            context.eventLoop.assumeIsolated().execute { [self] in
                flushScheduled = false
                ackOwed = false
                self.context?.flush()
            }
        }
    }

    /// Calls `body` with every query waiting for the channel or for its reply.
    func forEachQuery(_ body: (DoTQuery) -> Void) {
        machine.forEachQuery(body)
    }

    /// The query's deadline passed: forget it, and close the connection if it looks dead.
    func expire(_ query: DoTQuery, now: NIODeadline) {
        perform(machine.expire(query, now: now))
    }

    // MARK: Channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    /// The channel is set up; send what waited for it (TLS holds it until the handshake is done).
    func connected() {
        guard let context else { return }
        for query in machine.channelReady() { write(query, context: context) }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        do {
            try frames.process(buffer: unwrapInboundIn(data)) { frame in received(frame) }
        } catch {
            errorCaught(context: context, error: error)
        }
    }

    /// The queries in flight from which on the ACK of a burst of reads waits for the next write.
    static let ackDeferralThreshold = 16
    /// How long, at most, that ACK waits before it is sent on its own.
    static let ackDeferral = TimeAmount.microseconds(100)

    /// After a burst of reads, sees that the kernel acknowledges them soon if replies are still awaited
    /// and no query will be written this tick to carry the ACK.
    ///
    /// Upstreams such as Unbound write each reply as it is ready, with Nagle's algorithm on: while one
    /// reply is unacknowledged, the next ones wait for our ACK. Linux delays the ACKs of a connection
    /// that also sends (its "ping-pong" mode) by up to 40 ms, hoping to put them on the next write.
    /// When every client query is already upstream there is no next write, and the remaining replies
    /// wait for the delayed-ACK timer. TCP_QUICKACK sends the pending ACK at once. When queries are
    /// about to be flushed the ACK rides on them instead, which keeps the segments few under load.
    /// On a fresh TLS 1.3 connection this also stops the first reply waiting behind the server's
    /// session tickets.
    ///
    /// Under load (``ackDeferralThreshold`` queries or more in flight) the ACK waits up to
    /// ``ackDeferral`` for the next flush of queries, which clients at that load send within
    /// microseconds: meanwhile the upstream gathers its held replies into one segment, and the proxy
    /// reads them in one go instead of sending an ACK segment and reading again for every few
    /// replies. Only if no query was flushed by then is the ACK sent on its own.
    func channelReadComplete(context: ChannelHandlerContext) {
        if !flushScheduled && inFlight > 0 {
            if inFlight < Self.ackDeferralThreshold {
                acknowledgeNow(context: context)
            } else {
                ackOwed = true
                armAckCheck(context: context)
            }
        }
        context.fireChannelReadComplete()
    }

    private func armAckCheck(context: ChannelHandlerContext) {
        guard !ackCheckArmed else { return }
        ackCheckArmed = true
        context.eventLoop.assumeIsolated().scheduleTask(in: Self.ackDeferral) { [self] in
            ackCheckArmed = false
            guard ackOwed, inFlight > 0, let context = self.context else { return }
            acknowledgeNow(context: context)
        }
    }

    private func acknowledgeNow(context: ChannelHandlerContext) {
        ackOwed = false
        immediateAcks += 1
        #if os(Linux)
        _ = context.channel.setOption(
            ChannelOptions.socket(SocketOptionLevel(IPPROTO_TCP), SocketOptionName(TCP_QUICKACK)),
            value: 1
        )
        #endif
    }

    /// One DNS message from the upstream: the reply to a pending query, or counted and dropped. The
    /// reply is parsed and matched here, once; the query's owner gets it parsed.
    private func received(_ frame: ByteBuffer) {
        guard var reply = try? ParsedDNSMessage(frame) else {
            owner.connection(self, reported: .malformedReply)
            return
        }
        guard let now = context?.eventLoop.now else { return }
        let action = machine.replyArrived(id: reply.view.id, now: now) { reply.answersQuestion(of: $0.query) }
        guard case .deliver(let query, let then) = action else {
            owner.connection(self, reported: .unmatchedReply)
            return
        }
        DoTQueryPadding.stripPadding(&reply)
        reply.setID(query.query.view.id)
        query.succeed(reply)
        perform(then)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let completed = event as? TLSHandshakeCompleted {
            machine.tlsHandshakeCompleted()
            owner.connection(self, reported: .handshake(resumed: completed.resumed))
            owner.logger.debug(
                "TLS handshake done",
                metadata: [
                    "upstream": "\(owner.upstream)", "connection": .stringConvertible(identifier),
                    "tls": "\(completed.protocolName)",
                    "cipher": "\(completed.cipherName)", "resumed": .stringConvertible(completed.resumed),
                ]
            )
        } else if let ticket = event as? TLSSessionTicketReceived {
            owner.storeResumptionData(ticket.resumptionData)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if closeError == nil { closeError = owner.upstreamError(for: error) }
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        connectionClosed(
            error: closeError
                ?? UpstreamError(
                    .connectionReset,
                    upstream: owner.upstream.description,
                    detail: "the upstream closed the connection"
                )
        )
        context.fireChannelInactive()
    }

    /// The connection failed or closed: retry each in-flight query once elsewhere if the handshake had
    /// completed (a reset is normal for idle upstreams), otherwise fail it with the connection's error.
    func connectionClosed(error: UpstreamError) {
        guard let orphans = machine.closed() else { return }
        idleCheck?.cancel()
        idleCheck = nil
        context = nil
        owner.connectionDidClose(self, error: error)
        owner.logger.debug(
            "connection closed",
            metadata: [
                "upstream": "\(owner.upstream)", "connection": .stringConvertible(identifier),
                "reason": "\(error.code)",
                "detail": "\(error.detail)",
                "orphans": .stringConvertible(orphans.retry.count + orphans.fail.count),
            ]
        )
        for query in orphans.retry {
            query.retried = true
            owner.connection(self, reported: .retried)
            owner.resubmit(query)
        }
        for query in orphans.fail { query.fail(error) }
    }

    // MARK: Closing

    /// Does what the state machine asks after an event that may have left the connection idle.
    private func perform(_ action: DoTConnectionStateMachine.IdleAction) {
        switch action {
        case .none:
            break
        case .close(let reason):
            close(reason: reason)
        case .armIdleCheck(let deadline):
            guard let eventLoop = context?.eventLoop else { return }
            idleCheck = eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [self] in
                idleCheck = nil
                perform(machine.idleCheckFired(now: eventLoop.now))
            }
        }
    }

    /// Closes the connection gracefully (close_notify first).
    func close(reason: String) {
        guard let context else { return }
        if closeError == nil {
            closeError = UpstreamError(.connectionReset, upstream: owner.upstream.description, detail: reason)
        }
        machine.drain()
        context.close(promise: nil)
    }
}

@available(*, unavailable)
extension DoTConnection: Sendable {}
