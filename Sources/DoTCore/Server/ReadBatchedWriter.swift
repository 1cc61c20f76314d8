import NIOCore

/// Writes replies to one client channel and holds back the flush so that replies produced together
/// leave together: one `sendmmsg` for UDP, one `writev` for TCP.
///
/// - Replies written while a read is being delivered (cache hits) are flushed at
///   `channelReadComplete`.
/// - Replies written outside a read (answers from upstream) are flushed by a task that runs after the
///   event loop has handled its current I/O. One TLS read from the upstream completes many queries, and
///   they all go out in that one flush instead of a `sendmsg` each.
///
/// Lives on the channel's event loop; the handler that owns it calls it from there only.
final class ReadBatchedWriter {
    private var reading = false
    private var flushPending = false
    private var flushScheduled = false

    /// Call from `channelRead`, before handling the message.
    func readStarted() {
        reading = true
    }

    /// Writes `data` and makes sure a flush follows.
    func write(_ data: NIOAny, context: ChannelHandlerContext) {
        context.write(data, promise: nil)
        flushPending = true
        guard !reading, !flushScheduled else { return }
        flushScheduled = true
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.eventLoop.assumeIsolated().execute { [self] in
            flushScheduled = false
            flushIfPending(bound.value)
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
        context.flush()
    }
}

@available(*, unavailable)
extension ReadBatchedWriter: Sendable {}
