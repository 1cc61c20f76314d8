import NIOCore

/// What a selection policy knows about one usable upstream when it chooses where a query goes.
public struct UpstreamCandidate: Hashable, Sendable {
    /// The upstream's position in the pool, in the order it was configured.
    public var index: Int
    /// Queries sent to it and not yet answered.
    public var outstanding: Int
    /// Its smoothed reply time (an exponentially weighted moving average), or `nil` before its first
    /// reply.
    public var latency: TimeAmount?

    /// Creates a candidate.
    ///
    /// - Parameters:
    ///   - index: The upstream's position in configured order.
    ///   - outstanding: Queries in flight to it.
    ///   - latency: Its smoothed reply time, if known.
    public init(index: Int, outstanding: Int = 0, latency: TimeAmount? = nil) {
        self.index = index
        self.outstanding = outstanding
        self.latency = latency
    }
}
