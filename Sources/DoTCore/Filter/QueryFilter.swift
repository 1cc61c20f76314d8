import NIOCore

/// A stage of the query path that may answer a query before the cache and the upstreams: block it,
/// or answer it from local data. ``ForwardingQueryHandler`` consults its filter after admission and
/// parsing; ``DomainListFilter`` is the library's. Called on the event loop that read the query, so it
/// must not block.
public protocol QueryFilter: Sendable {
    /// What becomes of `query`, from `client`.
    func decide(_ query: ParsedDNSMessage, client: SocketAddress) -> QueryFilterDecision
}

/// What a ``QueryFilter`` decided.
public enum QueryFilterDecision: Sendable {
    /// On to the cache and the upstreams.
    case pass
    /// Blocked: the reply to send (`nil` sends nothing), the list that blocked it and the rule that
    /// matched, for the metrics and the query log.
    case blocked(reply: ByteBuffer?, list: String, rule: String)
    /// Answered from local data; `source` names it for the metrics and the query log.
    case answered(reply: ByteBuffer, source: String)
}
