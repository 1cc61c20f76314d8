import NIOCore

/// Writes replies to one client channel and holds back the flush so that replies produced together
/// leave together: one `sendmmsg` for UDP, one `writev` for TCP.
///
/// - Replies written while a read is being delivered (cache hits) are flushed at
///   `channelReadComplete`.
/// - Replies written outside a read (answers from upstream) are flushed by a task that runs after the
///   event loop has handled its current I/O. One TLS read from the upstream completes many queries, and
///   they all go out in that one flush instead of a `sendmsg` each.
/// - A reply written with a linger (the owner expects more replies soon) waits up to that long, so that
///   the replies of several upstream reads leave together; a reply without one, or a read, flushes it
///   earlier.
///
/// With ``onFlush`` set, the last write before each flush is held back until the flush and carries
/// the promise `onFlush` returns: it completes once every write of the flush has reached the kernel,
/// which is how the TCP handler counts replies not yet sent with one promise per flush.
///
/// Lives on the channel's event loop; the handler that owns it calls it from there only.
final class ReadBatchedWriter {
    private var reading = false
    private var flushPending = false
    private var endOfTickFlushScheduled = false
    private var lingeringFlushScheduled = false
    /// Called just before each flush; the promise it returns goes with the flush's last write.
    var onFlush: ((ChannelHandlerContext) -> EventLoopPromise<Void>?)?
    /// The last write, held for the flush while ``onFlush`` is set.
    private var held: NIOAny?

    /// Call from `channelRead`, before handling the message.
    func readStarted() {
        reading = true
    }

    /// Writes `data` and makes sure a flush follows: at the end of the read being delivered, else after
    /// `linger` if given, else at the end of the event-loop tick.
    func write(_ data: NIOAny, context: ChannelHandlerContext, linger: TimeAmount? = nil) {
        if onFlush == nil {
            context.write(data, promise: nil)
        } else {
            if let held { context.write(held, promise: nil) }
            held = data
        }
        flushPending = true
        // A flush already on its way takes this reply too. Under load most lingering answers end here,
        // so the loop check and the retains of a task's context come after this test, not before.
        guard !reading, !endOfTickFlushScheduled, linger == nil || !lingeringFlushScheduled else { return }
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        if let linger {
            lingeringFlushScheduled = true
            context.eventLoop.assumeIsolated().scheduleTask(in: linger) { [self] in
                lingeringFlushScheduled = false
                flushIfPending(bound.value)
            }
        } else {
            endOfTickFlushScheduled = true
            context.eventLoop.assumeIsolated().execute { [self] in
                endOfTickFlushScheduled = false
                flushIfPending(bound.value)
            }
        }
    }

    /// Call from `channelReadComplete`: flushes what the read produced.
    func readComplete(context: ChannelHandlerContext) {
        reading = false
        flushIfPending(context)
    }

    private func flushIfPending(_ context: ChannelHandlerContext) {
        guard flushPending else { return }
        flushPending = false
        if let held {
            self.held = nil
            context.write(held, promise: onFlush?(context))
        }
        context.flush()
    }
}

@available(*, unavailable)
extension ReadBatchedWriter: Sendable {}
