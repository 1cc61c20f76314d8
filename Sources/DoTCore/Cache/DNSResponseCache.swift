import NIOCore

/// Stores upstream replies and answers repeated queries from them.
///
/// Synchronous and `Sendable`, because a hit is answered on the event loop that read the query. The
/// caller parses the query and computes its ``DNSCacheKey`` once, and passes both to every method; the
/// instant is passed in too, so implementations need no clock of their own.
public protocol DNSResponseCache: Sendable {
    /// A reply for `query` if one is cached: with the query's ID and question case, TTLs aged, and an
    /// OPT record only if the query had one. The caller still fits it to the client's UDP size.
    ///
    /// - Parameters:
    ///   - query: The client's query.
    ///   - key: The query's key.
    ///   - now: The current instant.
    func lookup(_ query: ParsedDNSMessage, key: DNSCacheKey, now: NIODeadline) -> ByteBuffer?

    /// Offers an upstream reply for storage under `key`, the key of the query it answers. The cache
    /// decides whether and for how long.
    func store(_ reply: ParsedDNSMessage, key: DNSCacheKey, now: NIODeadline)

    /// Whether ``lookupStale(_:key:now:)`` can ever find something; the handler arms the client
    /// response timer only for caches that serve stale. `false` by default.
    var servesStale: Bool { get }

    /// An expired reply that may still be served because the upstream failed or is slow (RFC 8767),
    /// or `nil`. The default never finds one.
    func lookupStale(_ query: ParsedDNSMessage, key: DNSCacheKey, now: NIODeadline) -> ByteBuffer?

    /// Whether the entry under `key` is close to expiry and should be refreshed in the background now;
    /// `true` at most once per stored reply. The default is `false`.
    func claimPrefetch(key: DNSCacheKey, now: NIODeadline) -> Bool

    /// The longest TTL a client may be given in `reply`, fresh from the upstream, or `nil` for no
    /// limit (the default). The handler lowers the reply's TTLs to it, so that a client never holds an
    /// answer longer than the cache would (the cache's TTL policy applies to the first answer too).
    func longestTTL(for reply: ParsedDNSMessage) -> UInt32?

    /// Looks for `key` in a slower tier after ``lookup(_:key:now:)`` missed (a cache shared by
    /// replicas, such as Redis), and copies what it finds into this cache, so that the next `lookup`
    /// finds it. The handler calls it once per miss, before the upstream, and waits for the future; it
    /// must never fail, and must complete within the tier's own deadline. `nil` (the default) when
    /// there is no such tier.
    func fetch(_ query: ParsedDNSMessage, key: DNSCacheKey, on eventLoop: any EventLoop) -> EventLoopFuture<Void>?
}

extension DNSResponseCache {
    /// No serve-stale.
    public var servesStale: Bool { false }

    /// No serve-stale: never finds anything.
    public func lookupStale(_ query: ParsedDNSMessage, key: DNSCacheKey, now: NIODeadline) -> ByteBuffer? { nil }

    /// No prefetch.
    public func claimPrefetch(key: DNSCacheKey, now: NIODeadline) -> Bool { false }

    /// No limit.
    public func longestTTL(for reply: ParsedDNSMessage) -> UInt32? { nil }

    /// No slower tier.
    public func fetch(
        _ query: ParsedDNSMessage,
        key: DNSCacheKey,
        on eventLoop: any EventLoop
    ) -> EventLoopFuture<Void>? {
        nil
    }
}

/// The opt-out: stores nothing, finds nothing.
public struct NoOpDNSResponseCache: DNSResponseCache {
    /// Creates a cache that never caches.
    public init() {}

    public func lookup(_ query: ParsedDNSMessage, key: DNSCacheKey, now: NIODeadline) -> ByteBuffer? { nil }

    public func store(_ reply: ParsedDNSMessage, key: DNSCacheKey, now: NIODeadline) {}
}
