/// Counters of a rate limiter.
public struct RateLimitStatistics: Hashable, Sendable {
    /// Queries admitted.
    public var admitted = 0
    /// Queries answered REFUSED.
    public var refused = 0
    /// Queries dropped.
    public var dropped = 0
    /// Queries answered with an empty TC reply.
    public var slipped = 0
    /// Client prefixes tracked now.
    public var tableSize = 0
    /// Buckets evicted to keep the table within its bound.
    public var evictions = 0

    /// Creates zeroed counters.
    public init() {}
}
