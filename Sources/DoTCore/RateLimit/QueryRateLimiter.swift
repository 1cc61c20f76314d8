import NIOCore

/// Admits or limits a client's query at an instant. For no limit, give the handler none.
///
/// Synchronous and `Sendable`, because it sits on the hot path before any parsing beyond the header.
/// The instant is passed in, so implementations need no clock of their own and tests need no sleeping.
public protocol QueryRateLimiter: Sendable {
    /// Decides for one query.
    ///
    /// - Parameters:
    ///   - client: The client's address.
    ///   - transport: How the query came; TCP queries are never slipped.
    ///   - now: The current instant.
    func decide(for client: ClientAddress, clientProtocol: ClientProtocol, now: NIODeadline) -> RateLimitDecision
}
