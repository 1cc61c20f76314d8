/// Counters kept by a DoT transport, summed over its event loops.
public struct UpstreamStatistics: Hashable, Sendable {
    /// TCP connections opened (attempted).
    public var connectionsOpened = 0
    /// Connections open now.
    public var openConnections = 0
    /// TLS handshakes completed.
    public var handshakes = 0
    /// Handshakes that resumed an earlier session.
    public var resumedHandshakes = 0
    /// Queries submitted.
    public var queries = 0
    /// Replies delivered.
    public var replies = 0
    /// Queries that missed their deadline.
    public var timeouts = 0
    /// Queries moved to a fresh connection after a reset.
    public var retries = 0
    /// Replies dropped because their ID or question matched no pending query.
    public var unmatchedReplies = 0
    /// Replies dropped because they could not be parsed.
    public var malformedReplies = 0
    /// Queries refused because every connection was full.
    public var overloaded = 0

    /// Creates zeroed statistics.
    public init() {}

    static func + (lhs: Self, rhs: Self) -> Self {
        var sum = lhs
        sum.connectionsOpened += rhs.connectionsOpened
        sum.openConnections += rhs.openConnections
        sum.handshakes += rhs.handshakes
        sum.resumedHandshakes += rhs.resumedHandshakes
        sum.queries += rhs.queries
        sum.replies += rhs.replies
        sum.timeouts += rhs.timeouts
        sum.retries += rhs.retries
        sum.unmatchedReplies += rhs.unmatchedReplies
        sum.malformedReplies += rhs.malformedReplies
        sum.overloaded += rhs.overloaded
        return sum
    }
}
