import NIOCore

/// Serves one client TCP connection, or one DNS-over-TLS connection behind the TLS handler: framed
/// queries in, replies out as each completes (out of order, RFC 7766 §6.2.1.1). Replies are flushed in
/// batches (see `ReadBatchedWriter`). A query's edns-tcp-keepalive is answered with the idle timeout
/// and, over TLS, a padded query gets a padded reply (``StreamQueryOptions``).
///
/// It reads the connection's bytes and does the two-octet framing itself (``DNSStreamFraming``), as
/// the upstream connection does, rather than behind NIO's generic decoder and encoder handlers: those
/// run unspecialized here and looked up generic metadata and cast `NIOAny` on every query, about a
/// fifth of a TCP cache hit's instructions.
///
/// What one connection may hold is bounded (see ``Limits``):
/// - Queries in progress, cache hits and misses alike: a query counts from when it is taken until its
///   reply has been handed to the kernel. At ``Limits/maximumInFlight`` the handler takes no more
///   queries: it stops cutting frames out of what it has read and stops reading.
/// - Unsent reply bytes: the channel's write-buffer high-water mark. While the channel is not
///   writable (a client that does not read its replies) nothing more is read, and a connection that
///   stays blocked for ``Limits/writeStallTimeout`` is closed.
/// - Unparsed input: at most one read and a partial frame, and a query must arrive whole within
///   ``Limits/queryReadTimeout`` of its first octet (RFC 7766 §6.2.3), so a trickle cannot hold a
///   connection.
/// - Idle time: only whole queries and replies count as activity. When more than half of the server's
///   TCP slots are taken, the idle timeout shrinks to ``Limits/busyIdleTimeout``, as Unbound does, so
///   that idle or slow connections make room for new clients instead of every newcomer being refused.
///
/// Timers run on the event loop's clock, so tests drive them with an `EmbeddedEventLoop`.
final class TCPClientConnectionHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// What one connection may hold, and for how long.
    struct Limits {
        /// Queries in progress (waiting for the upstream, or replies not yet handed to the kernel).
        var maximumInFlight: Int
        /// Close after this long without a whole query or a reply, with nothing in progress.
        var idleTimeout: TimeAmount
        /// The idle timeout while more than half of the server's TCP slots are taken.
        var busyIdleTimeout: TimeAmount
        /// A query must arrive whole within this long of its first octet.
        var queryReadTimeout: TimeAmount
        /// Close a connection whose replies could not be written for this long.
        var writeStallTimeout: TimeAmount
    }

    private let handler: any DNSQueryHandler
    private let limits: Limits
    /// TCP, or TLS under a TLS handler.
    private let clientProtocol: ClientProtocol
    /// Whether more than half of the server's TCP slots are taken; `nil` when nobody keeps count.
    private let slots: TCPConnectionLimiter?
    /// Queries waiting for the upstream.
    private var waiting = 0
    /// Replies written and not yet handed to the kernel, counted in ``batches`` once flushed.
    private var unflushed = 0
    private var unsent = 0
    /// The last whole query read, or the last reply written.
    private var lastActivity = NIODeadline.uptimeNanoseconds(0)
    /// When the first octet of the incomplete query in ``input`` arrived.
    private var partialQuerySince: NIODeadline?
    /// When the channel last became unwritable, while it is.
    private var stalledSince: NIODeadline?
    private var check: Scheduled<Void>?
    private var readPending = false
    private var clientAddress: SocketAddress?
    /// Bytes read and not yet cut into queries.
    private var input: ByteBuffer?
    private let writer = ReadBatchedWriter()
    let drain = DrainTracker()

    init(
        handler: any DNSQueryHandler,
        limits: Limits,
        slots: TCPConnectionLimiter? = nil,
        clientProtocol: ClientProtocol = .tcp
    ) {
        self.handler = handler
        self.limits = limits
        self.slots = slots
        self.clientProtocol = clientProtocol
    }

    /// The idle timeout as edns-tcp-keepalive says it, in units of 100 ms: the shorter one while the
    /// server is busy, as the connection will then be closed sooner.
    private var keepaliveTimeout: UInt16 {
        let idle = slots?.isBusy == true ? min(limits.busyIdleTimeout, limits.idleTimeout) : limits.idleTimeout
        return UInt16(clamping: idle.nanoseconds / 100_000_000)
    }

    /// Whether another query may be taken now.
    private var takesQueries: Bool {
        waiting + unflushed + unsent < limits.maximumInFlight && stalledSince == nil
    }

    func handlerAdded(context: ChannelHandlerContext) {
        writer.onFlush = { [unowned self] context in flushed(context: context) }
        if context.channel.isActive { started(context: context) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        check?.cancel()
        check = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        started(context: context)
        context.fireChannelActive()
    }

    private func started(context: ChannelHandlerContext) {
        guard check == nil else { return }
        clientAddress = context.remoteAddress
        lastActivity = context.eventLoop.now
        scheduleCheck(context: context, at: lastActivity + min(limits.idleTimeout, limits.queryReadTimeout))
    }

    func channelInactive(context: ChannelHandlerContext) {
        check?.cancel()
        check = nil
        input = nil
        context.fireChannelInactive()
    }

    // MARK: Timers

    /// One timer for every deadline of the connection: idle, the partial query's, the write stall's.
    private func scheduleCheck(context: ChannelHandlerContext, at deadline: NIODeadline) {
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        check = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [self] in
            check = nil
            let context = bound.value
            if let due = nextDeadline(now: context.eventLoop.now) {
                scheduleCheck(context: context, at: due)
            } else {
                context.close(promise: nil)
            }
        }
    }

    /// A deadline was added (a partial query, a write stall): look at the connection when it is due
    /// rather than at the time the check was set for.
    private func deadlinesChanged(context: ChannelHandlerContext, now: NIODeadline) {
        guard let check, let due = nextDeadline(now: now) else { return }
        check.cancel()
        scheduleCheck(context: context, at: due)
    }

    /// When the connection must be looked at again, or `nil` when one of its deadlines has passed.
    private func nextDeadline(now: NIODeadline) -> NIODeadline? {
        var due = now + limits.idleTimeout
        if let stalledSince {
            let closesAt = stalledSince + limits.writeStallTimeout
            guard now < closesAt else { return nil }
            due = min(due, closesAt)
        }
        if let partialQuerySince {
            let closesAt = partialQuerySince + limits.queryReadTimeout
            guard now < closesAt else { return nil }
            due = min(due, closesAt)
        }
        if waiting + unflushed + unsent == 0 {
            let idle = slots?.isBusy == true ? min(limits.busyIdleTimeout, limits.idleTimeout) : limits.idleTimeout
            let closesAt = lastActivity + idle
            guard now < closesAt else { return nil }
            due = min(due, closesAt)
        }
        return due
    }

    // MARK: Reading

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        if input == nil || input!.readableBytes == 0 {
            input = bytes
        } else {
            if input!.readerIndex > 0 { input!.discardReadBytes() }
            input!.writeBuffer(&bytes)
        }
        writer.readStarted()
        takeQueries(context: context)
    }

    /// Cuts whole queries out of ``input`` and answers them while the limits allow.
    private func takeQueries(context: ChannelHandlerContext) {
        var tookOne = false
        while takesQueries, input != nil, let message = input!.readLengthPrefixedSlice(as: UInt16.self) {
            tookOne = true
            received(message, context: context)
        }
        let now = context.eventLoop.now
        if tookOne {
            lastActivity = now
            partialQuerySince = nil
        }
        guard let left = input?.readableBytes, left > 0 else {
            input = nil
            partialQuerySince = nil
            return
        }
        // What is left is a partial query, or whole ones that wait for room.
        let partial = left < 2 || left < 2 + Int(input!.getInteger(at: input!.readerIndex, as: UInt16.self)!)
        if partial, partialQuerySince == nil {
            partialQuerySince = now
            deadlinesChanged(context: context, now: now)
        }
    }

    /// One query from the client.
    private func received(_ message: ByteBuffer, context: ChannelHandlerContext) {
        guard let client = clientAddress ?? context.remoteAddress else { return }
        let query = DNSClientQuery(message: message, client: client, clientProtocol: clientProtocol)
        let options = StreamQueryOptions(query: message)
        switch handler.respond(to: query, on: context.eventLoop) {
        case .now(let reply):
            if let reply { write(reply, options: options, context: context) }
        case .later(let reply):
            waiting += 1
            drain.started()
            let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
            reply.hop(to: context.eventLoop).assumeIsolated().whenComplete { [self] result in
                waiting -= 1
                drain.finished()
                let context = bound.value
                if case .success(let reply?) = result, context.channel.isActive {
                    write(reply, options: options, context: context)
                } else {
                    resumeIfRoom(context: context)
                }
            }
        }
    }

    /// Writes `reply` behind its two-octet length, in one buffer. A reply too long for a frame (a
    /// query handler's bug: the proxy's own are at most 65,535 octets) closes the connection, as the
    /// encoder handler did, rather than leaving the client waiting.
    private func write(_ reply: ByteBuffer, options: StreamQueryOptions, context: ChannelHandlerContext) {
        let reply =
            options.isEmpty
            ? reply : options.amend(reply, keepaliveTimeout: keepaliveTimeout, pads: clientProtocol == .tls)
        var framed = context.channel.allocator.buffer(capacity: reply.readableBytes + 2)
        do {
            try DNSStreamFraming.writeFrame(reply, into: &framed)
        } catch {
            errorCaught(context: context, error: error)
            return
        }
        lastActivity = context.eventLoop.now
        unflushed += 1
        writer.write(wrapOutboundOut(framed), context: context)
    }

    /// A flush of `unflushed` replies went to the channel: count them as unsent until the kernel has
    /// them all (the last write of the flush completes after every earlier one).
    private func flushed(context: ChannelHandlerContext) -> EventLoopPromise<Void>? {
        guard unflushed > 0 else { return nil }
        let count = unflushed
        unflushed = 0
        unsent += count
        let promise = context.eventLoop.makePromise(of: Void.self)
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        promise.futureResult.assumeIsolated().whenComplete { [self] _ in
            unsent -= count
            // Paused: go on once this flush is over (the promise may complete inside it).
            guard readPending || input != nil else { return }
            bound.value.eventLoop.assumeIsolated().execute { [self] in resumeIfRoom(context: bound.value) }
        }
        return promise
    }

    /// Takes the queries already read, then reads more, once the limits allow.
    private func resumeIfRoom(context: ChannelHandlerContext) {
        guard takesQueries, context.channel.isActive else { return }
        if input != nil {
            writer.readStarted()
            takeQueries(context: context)
            writer.readComplete(context: context)
        }
        if readPending && takesQueries {
            readPending = false
            context.read()
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        writer.readComplete(context: context)
        context.fireChannelReadComplete()
    }

    func read(context: ChannelHandlerContext) {
        if takesQueries {
            context.read()
        } else {
            readPending = true
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            stalledSince = nil
            resumeIfRoom(context: context)
        } else if stalledSince == nil {
            let now = context.eventLoop.now
            stalledSince = now
            deadlinesChanged(context: context, now: now)
        }
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A broken frame or a reset client: close this connection only.
        context.close(promise: nil)
    }
}

@available(*, unavailable)
extension TCPClientConnectionHandler: Sendable {}
