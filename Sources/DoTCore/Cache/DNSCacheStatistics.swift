/// Counters of a response cache.
public struct DNSCacheStatistics: Hashable, Sendable {
    /// Lookups answered from the cache.
    public var hits = 0
    /// Lookups that found nothing (or only an expired entry).
    public var misses = 0
    /// Expired replies served because the upstream failed or was slow (RFC 8767).
    public var staleServed = 0
    /// Background refreshes started for entries close to expiry.
    public var prefetches = 0
    /// Replies stored.
    public var stores = 0
    /// Entries removed to stay within a bound.
    public var evictions = 0
    /// Entries held now.
    public var entries = 0
    /// Reply octets held now.
    public var bytes = 0

    /// Creates zeroed counters.
    public init() {}
}
