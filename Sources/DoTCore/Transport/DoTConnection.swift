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

    enum State {
        case connecting
        case ready
        case closed
    }

    unowned let owner: DoTConnectionSet
    let identifier: Int
    private(set) var state: State = .connecting
    private var context: ChannelHandlerContext?
    /// Queries waiting for the channel to exist.
    private var queued: [DoTQuery] = []
    /// Queries written, keyed by the ID used on this connection.
    private var pending: [UInt16: DoTQuery] = [:]
    private var nextID = UInt16.random(in: .min ... .max)
    private var flushScheduled = false
    /// Replies were read since the last flush of queries, and under load their ACK was left to ride on
    /// the next one (see `channelReadComplete(context:)`).
    private var ackOwed = false
    /// Whether the check that sends an owed ACK at the latest after ``ackDeferral`` is armed.
    private var ackCheckArmed = false
    /// When the last query in flight was answered or expired; `nil` while the connection has never
    /// been idle.
    private var idleSince: NIODeadline?
    /// The idle check, armed at most once: queries do not cancel it, it looks at ``idleSince`` when it
    /// fires (a timer set and cancelled per query was a visible share of a miss at low rates;
    /// Docs/performance.md, "The miss path").
    private var idleCheck: Scheduled<Void>?
    private(set) var handshakeCompleted = false
    private var consecutiveTimeouts = 0
    private(set) var queriesSent = 0
    let openedAt = NIODeadline.now()
    /// Set when the connection must take no new queries (max queries or age reached, suspect).
    private(set) var isDraining = false
    private var closeError: UpstreamError?
    private var frames = NIOSingleStepByteToMessageProcessor(DNSStreamFraming.makeFrameDecoder())
    /// How many times an ACK was asked for at once (TCP_QUICKACK).
    private(set) var immediateAcks = 0

    init(owner: DoTConnectionSet, identifier: Int) {
        self.owner = owner
        self.identifier = identifier
    }

    var inFlight: Int { queued.count + pending.count }
    var acceptsQueries: Bool { state != .closed && !isDraining }

    // MARK: Queries

    func enqueue(_ query: DoTQuery) {
        if state == .ready, let context {
            write(query, context: context)
        } else {
            queued.append(query)
        }
    }

    private func write(_ query: DoTQuery, context: ChannelHandlerContext) {
        var id = nextID
        while pending[id] != nil { id &+= 1 }
        nextID = id &+ 1
        query.setConnectionID(id)
        pending[id] = query
        queriesSent += 1
        context.write(wrapOutboundOut(query.frame), promise: nil)
        if !flushScheduled {
            flushScheduled = true
            context.eventLoop.assumeIsolated().execute { [self] in
                flushScheduled = false
                ackOwed = false
                self.context?.flush()
            }
        }
        if let limit = owner.configuration.maximumQueriesPerConnection, queriesSent >= limit { isDraining = true }
    }

    /// Calls `body` with every query waiting for the channel or for its reply.
    func forEachQuery(_ body: (DoTQuery) -> Void) {
        for query in queued { body(query) }
        for query in pending.values { body(query) }
    }

    /// The query's deadline passed: forget it, and close the connection if it looks dead.
    func expire(_ query: DoTQuery) {
        if let index = queued.firstIndex(where: { $0 === query }) { queued.remove(at: index) }
        if let entry = pending.first(where: { $0.value === query }) { pending.removeValue(forKey: entry.key) }
        consecutiveTimeouts += 1
        // Two deadlines in a row with no reply in between: a half-open or stuck connection.
        if consecutiveTimeouts >= 2 || !handshakeCompleted {
            isDraining = true
            if inFlight == 0 { close(reason: "upstream stopped answering") }
        }
        noteIdleIfNoQueries()
    }

    // MARK: Channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    /// The channel is set up; send what waited for it (TLS holds it until the handshake is done).
    func connected() {
        guard state == .connecting, let context else { return }
        state = .ready
        let waiting = queued
        queued.removeAll()
        for query in waiting where !query.isDone { write(query, context: context) }
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

    /// One DNS message from the upstream: the reply to a pending query, or counted and dropped.
    private func received(_ frame: ByteBuffer) {
        guard let view = try? DNSMessageView(frame) else {
            owner.statistics.malformedReplies += 1
            return
        }
        guard let query = pending[view.id], view.isResponse,
            view.questionMatches(query.view, in: frame, otherBuffer: query.message)
        else {
            owner.statistics.unmatchedReplies += 1
            return
        }
        pending.removeValue(forKey: view.id)
        consecutiveTimeouts = 0
        var reply = DoTQueryPadding.stripPadding(frame, view: view)
        if reply.readerIndex == frame.readerIndex && reply.writerIndex == frame.writerIndex {
            // Unchanged: restore the ID in place.
            view.setID(query.originalID, in: &reply)
        } else {
            reply.setInteger(query.originalID, at: reply.readerIndex)
        }
        owner.statistics.replies += 1
        query.succeed(reply)
        if isDraining && inFlight == 0 { close(reason: "connection retired") }
        noteIdleIfNoQueries()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let completed = event as? TLSHandshakeCompleted {
            handshakeCompleted = true
            owner.statistics.handshakes += 1
            if completed.resumed { owner.statistics.resumedHandshakes += 1 }
            (completed.resumed ? owner.metrics.resumedHandshakes : owner.metrics.handshakes).increment()
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
        guard state != .closed else { return }
        state = .closed
        idleCheck?.cancel()
        idleCheck = nil
        context = nil
        let orphans = queued + pending.values.sorted { $0.originalID < $1.originalID }
        queued.removeAll()
        pending.removeAll()
        owner.connectionDidClose(self, error: error)
        owner.logger.debug(
            "connection closed",
            metadata: [
                "upstream": "\(owner.upstream)", "connection": .stringConvertible(identifier),
                "reason": "\(error.code)",
                "detail": "\(error.detail)",
                "orphans": .stringConvertible(orphans.count),
            ]
        )
        for query in orphans where !query.isDone {
            if handshakeCompleted && !query.retried {
                query.retried = true
                owner.statistics.retries += 1
                owner.submit(query)
            } else {
                query.fail(error)
            }
        }
    }

    // MARK: Closing

    /// With no query in flight, retires a draining connection, or notes when it became idle and arms
    /// the idle check if none is armed.
    private func noteIdleIfNoQueries() {
        guard inFlight == 0, state == .ready, let context else { return }
        if isDraining {
            close(reason: "connection retired")
            return
        }
        let now = context.eventLoop.now
        idleSince = now
        if idleCheck == nil { scheduleIdleCheck(at: now + owner.configuration.idleTimeout, on: context.eventLoop) }
    }

    /// Closes the connection if it has been idle for the timeout by `deadline`, or checks again when it
    /// will have been. A connection busy at the check is checked again once it is next idle.
    private func scheduleIdleCheck(at deadline: NIODeadline, on eventLoop: any EventLoop) {
        idleCheck = eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [self] in
            idleCheck = nil
            guard inFlight == 0, state == .ready, let idleSince else { return }
            let closesAt = idleSince + owner.configuration.idleTimeout
            if eventLoop.now >= closesAt {
                close(reason: "idle")
            } else {
                scheduleIdleCheck(at: closesAt, on: eventLoop)
            }
        }
    }

    /// Closes the connection gracefully (close_notify first).
    func close(reason: String) {
        guard let context else { return }
        if closeError == nil {
            closeError = UpstreamError(.connectionReset, upstream: owner.upstream.description, detail: reason)
        }
        isDraining = true
        context.close(promise: nil)
    }
}

@available(*, unavailable)
extension DoTConnection: Sendable {}
