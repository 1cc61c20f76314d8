import NIOCore

/// One query on its way to an upstream: the padded wire form, the client's ID to restore, and the
/// promise to complete. Owned by one event loop.
final class DoTQuery {
    let promise: EventLoopPromise<ByteBuffer>
    /// The padded query; its ID is overwritten with the connection's ID when sent.
    var wire: ByteBuffer
    /// The index of `wire`, for matching the reply's question.
    let view: DNSMessageView
    let originalID: UInt16
    /// When the query fails with a timeout; the pool's one timer enforces it.
    let deadline: NIODeadline
    /// Whether the query has already been moved to a fresh connection after a reset.
    var retried = false
    var isDone = false

    init(promise: EventLoopPromise<ByteBuffer>, wire: ByteBuffer, view: DNSMessageView, deadline: NIODeadline) {
        self.promise = promise
        self.deadline = deadline
        self.wire = wire
        self.view = view
        self.originalID = view.id
    }

    func succeed(_ reply: ByteBuffer) {
        guard !isDone else { return }
        isDone = true
        promise.succeed(reply)
    }

    func fail(_ error: UpstreamError) {
        guard !isDone else { return }
        isDone = true
        promise.fail(error)
    }
}
