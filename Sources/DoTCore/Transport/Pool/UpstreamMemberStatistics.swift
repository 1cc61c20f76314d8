import NIOCore

/// The state and counters of one upstream in an ``UpstreamPool``.
public struct UpstreamMemberStatistics: Hashable, Sendable {
    /// The upstream's name, as configured.
    public var name: String
    /// Whether queries may go to it now.
    public var isUp = true
    /// Why it last went down, while it is down.
    public var downReason = ""
    /// Queries in flight to it.
    public var outstanding = 0
    /// Its smoothed reply time, once it has answered.
    public var latency: TimeAmount?
    /// Queries sent to it (probes excluded).
    public var queries = 0
    /// Replies it gave that were passed on.
    public var replies = 0
    /// Queries that got no reply in time.
    public var timeouts = 0
    /// Queries that failed to connect, handshake or verify, or lost their connection.
    public var connectionFailures = 0
    /// Other failures (malformed replies, overload).
    public var otherFailures = 0
    /// Replies with a failover response code (SERVFAIL or REFUSED by default).
    public var failoverResponses = 0
    /// Queries that moved on from this upstream to another one.
    public var failovers = 0
    /// Health probes sent to it.
    public var probes = 0
    /// Times it was marked down.
    public var downTransitions = 0
    /// Client queries sent to it while every upstream was down, to find out whether it is back.
    public var recoveryQueries = 0

    /// Creates zeroed statistics for the upstream called `name`.
    ///
    /// - Parameter name: The upstream's name.
    public init(name: String) {
        self.name = name
    }
}
