import DoTCore
import Logging
import NIOCore
import NIOPosix

/// Two cache tiers: the in-memory cache of this process first, then Redis, shared by every replica.
///
/// A first-tier miss asks Redis before the upstream (``fetch(_:key:on:)``, within the client's
/// deadline); what Redis holds is copied into the first tier with its age, so TTLs are aged the same
/// whichever replica stored it. A reply from the upstream is stored in both tiers, in Redis without
/// waiting, with Redis's expiry set to the reply's cache lifetime (plus the serve-stale window when
/// the first tier serves stale, so an expired answer can be served stale by any replica).
///
/// Everything else (the TTL policy, negative answers, serve-stale, prefetch) is the first tier's:
/// an entry read from Redis behaves as if this replica had stored it.
///
/// Anyone who can write to the Redis database can answer this replica's clients; see the threat model.
public final class TieredDNSResponseCache: DNSResponseCache {
    /// The first tier.
    public let memory: InMemoryDNSResponseCache
    /// The second tier.
    public let redis: RedisClient
    /// What every key starts with; replicas that share a cache share a prefix.
    public let keyPrefix: String
    private let metrics: RedisCacheMetrics

    /// Creates a two-tier cache.
    ///
    /// - Parameters:
    ///   - memory: The first tier, with the TTL policy.
    ///   - redis: The second tier's client.
    ///   - keyPrefix: What every key starts with; `dotproxy:` by default.
    ///   - metrics: Where lookups and stores are counted; pass the client's.
    public init(
        memory: InMemoryDNSResponseCache,
        redis: RedisClient,
        keyPrefix: String = "dotproxy:",
        metrics: RedisCacheMetrics = RedisCacheMetrics()
    ) {
        self.memory = memory
        self.redis = redis
        self.keyPrefix = keyPrefix
        self.metrics = metrics
    }

    public func lookup(_ query: ParsedDNSMessage, key: DNSCacheKey, now: NIODeadline) -> ByteBuffer? {
        memory.lookup(query, key: key, now: now)
    }

    public var servesStale: Bool { memory.servesStale }

    public func lookupStale(_ query: ParsedDNSMessage, key: DNSCacheKey, now: NIODeadline) -> ByteBuffer? {
        memory.lookupStale(query, key: key, now: now)
    }

    public func claimPrefetch(key: DNSCacheKey, now: NIODeadline) -> Bool {
        memory.claimPrefetch(key: key, now: now)
    }

    public func longestTTL(for reply: ParsedDNSMessage) -> UInt32? {
        memory.longestTTL(for: reply)
    }

    /// Stores an upstream reply in memory, and sends it to Redis without waiting for the answer.
    public func store(_ reply: ParsedDNSMessage, key: DNSCacheKey, now: NIODeadline) {
        memory.store(reply, key: key, now: now)
        guard let retention = memory.retention(of: reply), let name = RedisCacheKey.make(prefix: keyPrefix, for: reply)
        else { return }
        let keptFor = (Int64(retention.lifetime) + Int64(retention.staleWindow)) * 1000
        let value = RedisCacheEntry(keptFor: keptFor, reply: reply).encoded
        let loop = MultiThreadedEventLoopGroup.currentEventLoop ?? redis.anyEventLoop
        let metrics = self.metrics
        redis.execute(
            [[Self.set, name, value, Self.expiryInMilliseconds, Array(String(keptFor).utf8)]],
            purpose: .store,
            on: loop
        ) { result in
            switch result {
            case .success: metrics.storesSent.increment()
            case .failure(let error)
            where error.code == .notConnected || error.code == .overloaded || error.code == .breakerOpen:
                metrics.storesSkipped.increment()
            case .failure: metrics.storeErrors.increment()
            }
        }
    }

    private static let get = Array("GET".utf8)
    private static let timeToLive = Array("PTTL".utf8)
    private static let set = Array("SET".utf8)
    private static let expiryInMilliseconds = Array("PX".utf8)

    /// Asks Redis for `query`'s reply and copies it into the first tier, aged by the time it spent in
    /// Redis; completes within the client's deadline, and never fails.
    public func fetch(
        _ query: ParsedDNSMessage,
        key: DNSCacheKey,
        on eventLoop: any EventLoop
    ) -> EventLoopFuture<Void>? {
        guard let name = RedisCacheKey.make(prefix: keyPrefix, for: query) else { return nil }
        let started = NIODeadline.now()
        let (memory, metrics) = (self.memory, self.metrics)
        let fetched = eventLoop.makePromise(of: Void.self)
        redis.execute([[Self.get, name], [Self.timeToLive, name]], purpose: .lookup, on: eventLoop) { result in
            defer { fetched.succeed() }
            let replies: [RESPValue]
            switch result {
            case .success(let values):
                replies = values
            case .failure(let error):
                switch error.code {
                case .timeout: metrics.timeouts.increment()
                case .breakerOpen, .notConnected, .overloaded, .shutdown: metrics.skipped.increment()
                default: metrics.errors.increment()
                }
                return
            }
            let now = NIODeadline.now()
            metrics.lookupDuration.recordNanoseconds((now - started).nanoseconds)
            guard replies.count == 2, case .bulkString(let value) = replies[0],
                case .integer(let timeToLive) = replies[1], timeToLive > 0
            else {
                metrics.misses.increment()
                return
            }
            guard let entry = RedisCacheEntry(value), entry.reply.answersQuestion(of: query) else {
                metrics.errors.increment()
                return
            }
            let age = max(0, entry.keptFor - timeToLive)
            memory.store(entry.reply, key: key, now: now - .milliseconds(age))
            let lifetime = Int64(memory.retention(of: entry.reply)?.lifetime ?? 0) * 1000
            (age < lifetime ? metrics.hits : metrics.stale).increment()
        }
        return fetched.futureResult
    }
}
