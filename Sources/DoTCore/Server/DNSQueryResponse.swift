import NIOCore

/// What a ``DNSQueryHandler`` does with a query: answer at once, or later.
///
/// A cache hit, a refusal or a FORMERR is known while the query is being read, so listeners write it
/// without a future or a callback; only an answer that waits for the upstream is `later`.
public enum DNSQueryResponse: Sendable {
    /// The reply to send now, or `nil` to send nothing (a drop).
    case now(ByteBuffer?)
    /// The reply (or `nil` for a drop), when it is ready; it should complete on the event loop that
    /// read the query.
    case later(EventLoopFuture<ByteBuffer?>)
}
