import NIOCore

/// Holds back the flush of replies written while a read is being delivered, so that a batch of cache
/// hits leaves in one flush (`sendmmsg` for UDP, one `writev` for TCP) at `channelReadComplete`.
/// Replies written outside a read (answers from upstream) are flushed at once.
struct ReadBatchedWriter {
    private var reading = false
    private var flushPending = false

    /// Call from `channelRead`, before handling the message.
    mutating func readStarted() {
        reading = true
    }

    /// Writes `data`; flushes now unless a read is in progress.
    mutating func write(_ data: NIOAny, context: ChannelHandlerContext) {
        if reading {
            context.write(data, promise: nil)
            flushPending = true
        } else {
            context.writeAndFlush(data, promise: nil)
        }
    }

    /// Call from `channelReadComplete`: flushes what the read produced.
    mutating func readComplete(context: ChannelHandlerContext) {
        reading = false
        if flushPending {
            flushPending = false
            context.flush()
        }
    }
}
