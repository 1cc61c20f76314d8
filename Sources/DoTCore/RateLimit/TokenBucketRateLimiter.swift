import CoreMetrics
import NIOConcurrencyHelpers
import NIOCore

/// A token bucket per client prefix: `queriesPerSecond` sustained, `burst` at once.
///
/// Clients are grouped by prefix (/32 and /64 by default, /24 and /56 are common choices), so one host
/// cannot dodge the limit by rotating addresses within its allocation. The table is sharded by prefix
/// hash so that event loops rarely contend, and bounded: when a shard is full, a CLOCK hand looks for
/// an idle bucket (one that has refilled completely, so forgetting it changes nothing) and otherwise
/// evicts the oldest, so a flood of spoofed sources cannot grow memory past ``Configuration/maximumPrefixes``.
public final class TokenBucketRateLimiter: QueryRateLimiter {
    /// How the limiter behaves.
    public struct Configuration: Hashable, Sendable {
        /// Sustained queries per second per prefix.
        public var queriesPerSecond: Double
        /// Queries a prefix may send at once from a full bucket.
        public var burst: Double
        /// IPv4 prefix length that forms one client (1-32).
        public var ipv4PrefixLength: Int
        /// IPv6 prefix length that forms one client (1-128).
        public var ipv6PrefixLength: Int
        /// What happens to a query over the limit.
        public var action: RateLimitDecision
        /// With ``RateLimitDecision/slip``: every Nth limited UDP query gets a TC reply, the rest are dropped.
        public var slipInterval: Int
        /// The most prefixes tracked at once.
        public var maximumPrefixes: Int
        /// Networks that are never limited.
        public var exempt: [IPNetwork]

        /// Creates a configuration.
        ///
        /// - Parameters:
        ///   - queriesPerSecond: Sustained rate per prefix.
        ///   - burst: Bucket size; twice the rate (and at least 1) by default.
        ///   - ipv4PrefixLength: IPv4 grouping; /32.
        ///   - ipv6PrefixLength: IPv6 grouping; /64.
        ///   - action: What to do over the limit; REFUSED.
        ///   - slipInterval: For slip, one TC reply per this many limited queries; 2.
        ///   - maximumPrefixes: Table bound; 100,000.
        ///   - exempt: Networks never limited; none.
        public init(
            queriesPerSecond: Double,
            burst: Double? = nil,
            ipv4PrefixLength: Int = 32,
            ipv6PrefixLength: Int = 64,
            action: RateLimitDecision = .refuse,
            slipInterval: Int = 2,
            maximumPrefixes: Int = 100_000,
            exempt: [IPNetwork] = []
        ) {
            self.queriesPerSecond = queriesPerSecond
            self.burst = burst ?? max(1, queriesPerSecond * 2)
            self.ipv4PrefixLength = ipv4PrefixLength
            self.ipv6PrefixLength = ipv6PrefixLength
            self.action = action
            self.slipInterval = slipInterval
            self.maximumPrefixes = maximumPrefixes
            self.exempt = exempt
        }
    }

    private struct Prefix: Hashable {
        var high: UInt64
        var low: UInt64
    }

    private struct Bucket {
        var prefix: Prefix
        var tokens: Double
        var lastRefill: UInt64
        var limitedCount: UInt32
    }

    private struct Shard {
        var slots: [Prefix: Int] = [:]
        var buckets: [Bucket] = []
        var hand = 0
    }

    /// The configuration in effect.
    public let configuration: Configuration
    private let shards: [NIOLockedValueBox<Shard>]
    private let capacityPerShard: Int
    private let ipv4Mask: UInt32
    private let ipv6Masks: (UInt64, UInt64)
    private let nanosecondsPerToken: Double
    private let evictions: Counter

    /// Creates a limiter.
    ///
    /// - Parameters:
    ///   - configuration: Rate, burst, grouping, action and bounds.
    ///   - shardCount: How many independently locked shards to use; 16 by default.
    ///   - metrics: Where evicted prefixes are counted (``DNSProxyMetrics/Name/rateLimitEvictions``);
    ///     the decisions are counted by the handler that asks.
    public init(configuration: Configuration, shardCount: Int = 16, metrics: DNSProxyMetrics = DNSProxyMetrics()) {
        self.configuration = configuration
        self.evictions = metrics.rateLimitEvictions
        let shardCount = max(1, min(shardCount, configuration.maximumPrefixes))
        self.shards = (0..<shardCount).map { _ in NIOLockedValueBox(Shard()) }
        self.capacityPerShard = max(1, configuration.maximumPrefixes / shardCount)
        self.ipv4Mask = IPNetwork.mask32(UInt8(clamping: configuration.ipv4PrefixLength))
        self.ipv6Masks = IPNetwork.mask128(UInt8(clamping: configuration.ipv6PrefixLength))
        self.nanosecondsPerToken = configuration.queriesPerSecond > 0 ? 1e9 / configuration.queriesPerSecond : .infinity
    }

    public func decide(for client: ClientAddress, clientProtocol: ClientProtocol, now: NIODeadline) -> RateLimitDecision
    {
        for network in configuration.exempt where network.contains(client) { return .admit }
        let prefix: Prefix
        switch client.kind {
        case .v4(let value): prefix = Prefix(high: UInt64.max, low: UInt64(value & ipv4Mask))
        case .v6(let high, let low): prefix = Prefix(high: high & ipv6Masks.0, low: low & ipv6Masks.1)
        }
        let shard = shards[Int(truncatingIfNeeded: UInt(bitPattern: prefix.hashValue) % UInt(shards.count))]
        let nowNanos = UInt64(max(0, now.uptimeNanoseconds))
        return shard.withLockedValue { shard in
            let index: Int
            if let existing = shard.slots[prefix] {
                index = existing
                refill(&shard.buckets[index], now: nowNanos)
            } else {
                index = insert(prefix, into: &shard, now: nowNanos)
            }
            if shard.buckets[index].tokens >= 1 {
                shard.buckets[index].tokens -= 1
                return .admit
            }
            shard.buckets[index].limitedCount &+= 1
            var decision = configuration.action
            if decision == .slip {
                if !clientProtocol.isUDP {
                    decision = .refuse
                } else if configuration.slipInterval <= 0
                    || shard.buckets[index].limitedCount % UInt32(clamping: configuration.slipInterval) != 0
                {
                    decision = .drop
                }
            }
            return decision
        }
    }

    @inline(__always)
    private func refill(_ bucket: inout Bucket, now: UInt64) {
        guard now > bucket.lastRefill else { return }
        let earned = Double(now - bucket.lastRefill) / nanosecondsPerToken
        bucket.tokens = min(configuration.burst, bucket.tokens + earned)
        bucket.lastRefill = now
    }

    private func isIdle(_ bucket: Bucket, now: UInt64) -> Bool {
        guard now > bucket.lastRefill else { return bucket.tokens >= configuration.burst }
        return bucket.tokens + Double(now - bucket.lastRefill) / nanosecondsPerToken >= configuration.burst
    }

    /// Adds a full bucket for `prefix`, evicting one when the shard is at capacity.
    private func insert(_ prefix: Prefix, into shard: inout Shard, now: UInt64) -> Int {
        let fresh = Bucket(prefix: prefix, tokens: configuration.burst, lastRefill: now, limitedCount: 0)
        if shard.buckets.count < capacityPerShard {
            shard.buckets.append(fresh)
            shard.slots[prefix] = shard.buckets.count - 1
            return shard.buckets.count - 1
        }
        // CLOCK: prefer an idle bucket among the next few, else take the one under the hand.
        var victim = shard.hand
        for step in 0..<min(8, shard.buckets.count) {
            let candidate = (shard.hand + step) % shard.buckets.count
            if isIdle(shard.buckets[candidate], now: now) {
                victim = candidate
                break
            }
        }
        shard.hand = (victim + 1) % shard.buckets.count
        shard.slots.removeValue(forKey: shard.buckets[victim].prefix)
        shard.buckets[victim] = fresh
        shard.slots[prefix] = victim
        evictions.increment()
        return victim
    }

    /// How many client prefixes the limiter tracks now; at most
    /// ``Configuration/maximumPrefixes``.
    public var trackedPrefixes: Int {
        shards.reduce(0) { total, shard in total + shard.withLockedValue { $0.buckets.count } }
    }
}
