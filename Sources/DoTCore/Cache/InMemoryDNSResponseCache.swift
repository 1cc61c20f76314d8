import NIOConcurrencyHelpers
import NIOCore

/// The default ``DNSResponseCache``: replies kept in wire form, in sharded tables bounded by entries
/// and by bytes, evicted by CLOCK (an LRU approximation whose hits only set a bit).
///
/// - TTL: the smallest answer TTL, clamped to [``Configuration/minimumTTL``, ``Configuration/maximumTTL``].
///   NXDOMAIN and NODATA live for min(SOA TTL, SOA MINIMUM) (RFC 2308), capped by
///   ``Configuration/maximumNegativeTTL``, and are not cached without an SOA. SERVFAIL lives for
///   ``Configuration/serverFailureTTL`` (0: never). Truncated replies and other error codes are never
///   stored. Record TTLs above the entry's lifetime are lowered to it.
/// - The OPT record is hop-by-hop: it is removed before storing, and a hit carries an OPT only if the
///   client sent one.
/// - A hit copies the stored bytes once into the reply buffer, writes the client's ID and question
///   name (so 0x20 case survives), and ages every TTL by the time spent in the cache. The stored
///   question is compared with the client's before anything is served.
public final class InMemoryDNSResponseCache: DNSResponseCache {
    /// Bounds and TTL policy.
    public struct Configuration: Hashable, Sendable {
        /// The most replies held.
        public var maximumEntries: Int
        /// The most reply octets held.
        public var maximumBytes: Int
        /// The shortest lifetime given to a positive reply, in seconds.
        public var minimumTTL: UInt32
        /// The longest lifetime of any reply, in seconds.
        public var maximumTTL: UInt32
        /// The longest lifetime of a negative reply, in seconds.
        public var maximumNegativeTTL: UInt32
        /// How long SERVFAIL is kept, in seconds; 0 disables.
        public var serverFailureTTL: UInt32
        /// Whether expired replies may be served when the upstream fails (RFC 8767). Off by default.
        public var serveStale: Bool
        /// How long after expiry a reply may still be served stale, in seconds.
        public var staleWindow: UInt32
        /// Whether a hit in the last tenth of an entry's lifetime starts one background refresh.
        public var prefetch: Bool

        /// Creates a configuration.
        ///
        /// - Parameters:
        ///   - maximumEntries: Replies held; 10,000.
        ///   - maximumBytes: Octets held; 64 MiB.
        ///   - minimumTTL: Positive lifetime floor; 0.
        ///   - maximumTTL: Lifetime ceiling; 86,400 (one day).
        ///   - maximumNegativeTTL: Negative lifetime ceiling; 3,600.
        ///   - serverFailureTTL: SERVFAIL lifetime; 5 (0 disables).
        ///   - serveStale: Serve expired replies when the upstream fails; off.
        ///   - staleWindow: How long after expiry; 86,400 (one day).
        ///   - prefetch: Refresh popular entries before they expire; off.
        public init(
            maximumEntries: Int = 10_000,
            maximumBytes: Int = 64 << 20,
            minimumTTL: UInt32 = 0,
            maximumTTL: UInt32 = 86_400,
            maximumNegativeTTL: UInt32 = 3_600,
            serverFailureTTL: UInt32 = 5,
            serveStale: Bool = false,
            staleWindow: UInt32 = 86_400,
            prefetch: Bool = false
        ) {
            self.serveStale = serveStale
            self.staleWindow = staleWindow
            self.prefetch = prefetch
            self.maximumEntries = maximumEntries
            self.maximumBytes = maximumBytes
            self.minimumTTL = minimumTTL
            self.maximumTTL = maximumTTL
            self.maximumNegativeTTL = maximumNegativeTTL
            self.serverFailureTTL = serverFailureTTL
        }
    }

    /// One cached reply. `storage` holds the reply's wire bytes followed by the offsets of its TTLs
    /// (big-endian UInt16 pairs), so an entry costs one heap block.
    private struct Entry {
        var key: DNSCacheKey
        var storage: [UInt8]
        var storedAt: UInt64
        var lifetime: UInt64
        var length: UInt16
        var questionNameStart: UInt16
        var questionNameLength: UInt8
        var questionType: UInt16
        var questionClass: UInt16
        /// Set by a hit, cleared by the CLOCK hand as it passes.
        var referenced = false
        var prefetchClaimed = false

        var isFree: Bool { storage.isEmpty }
    }

    /// One lock's share of the cache: a slot array swept by a CLOCK hand, and an index by key.
    private struct Shard {
        var index: [DNSCacheKey: Int] = [:]
        var entries: [Entry] = []
        var free: [Int] = []
        var hand = 0
        var bytes = 0
        /// Entries evicted since the metrics were last told.
        var unreportedEvictions = 0
        /// What the metrics have been told so far (entries, bytes).
        var reported = (entries: 0, bytes: 0)

        /// The change since the metrics were last told, which they are now.
        mutating func unreportedChange() -> (entries: Int, bytes: Int, evictions: Int) {
            let change = (index.count - reported.entries, bytes - reported.bytes, unreportedEvictions)
            reported = (index.count, bytes)
            unreportedEvictions = 0
            return change
        }

        /// When the entry in `slot` expires, in uptime nanoseconds. (Read field by field: passing the
        /// entry itself around would copy it and retain its storage on every hit.)
        func expiry(of slot: Int) -> UInt64 { entries[slot].storedAt &+ entries[slot].lifetime }

        /// Whether the entry in `slot` answers the question at `name` in `query` (the name compared
        /// case-insensitively), with `type` and `klass`.
        func answers(
            _ slot: Int,
            query: ByteBuffer,
            name: Range<Int>,
            type: DNSRecordType?,
            class klass: DNSClass?
        ) -> Bool {
            guard entries[slot].questionType == type?.rawValue, entries[slot].questionClass == klass?.rawValue,
                Int(entries[slot].questionNameLength) == name.count
            else { return false }
            let start = Int(entries[slot].questionNameStart)
            return entries[slot].storage.withUnsafeBufferPointer { stored in
                query.withUnsafeReadableBytes { bytes in
                    name.upperBound <= bytes.count && start + name.count <= stored.count
                        && DNSName.equalIgnoringCase(
                            UnsafeRawBufferPointer(rebasing: bytes[name]),
                            UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: stored[start..<start + name.count]))
                        )
                }
            }
        }

        /// Copies the storage of `slot` (reply and TTL offsets) into `out` in one go, so no reference
        /// to the entry's array leaves the lock.
        func copy(_ slot: Int, into out: inout ByteBuffer?) -> Found {
            // Room for the reply and the OPT record `finish` may append: one allocation per hit. (Not
            // `ByteBuffer()`: that shares NIO's one empty storage, whose reference count every event
            // loop thread would then write to.)
            var bytes = ByteBufferAllocator().buffer(
                capacity: max(entries[slot].storage.count, Int(entries[slot].length) + EDNSRecord.proxyOPTLength)
            )
            entries[slot].storage.withUnsafeBytes { _ = bytes.writeBytes($0) }
            out = bytes
            return Found(
                length: Int(entries[slot].length),
                questionNameStart: Int(entries[slot].questionNameStart),
                storedAt: entries[slot].storedAt
            )
        }

        mutating func remove(_ slot: Int) {
            index.removeValue(forKey: entries[slot].key)
            bytes -= Int(entries[slot].length)
            entries[slot].storage = []
            free.append(slot)
        }

        /// Evicts the first entry the hand finds without its referenced bit, clearing bits on the way
        /// (a second chance for entries hit since the last pass).
        mutating func evictOne() {
            guard !index.isEmpty else { return }
            while true {
                if hand >= entries.count { hand = 0 }
                let slot = hand
                hand += 1
                guard !entries[slot].isFree else { continue }
                if entries[slot].referenced {
                    entries[slot].referenced = false
                } else {
                    remove(slot)
                    unreportedEvictions += 1
                    return
                }
            }
        }
    }

    /// The configuration in effect.
    public var configuration: Configuration { settings.withLockedValue { $0.configuration } }
    private let shards: [NIOLockedValueBox<Shard>]
    /// Replaced whole by ``update(configuration:)``; each operation reads it once.
    private let settings: NIOLockedValueBox<Settings>
    private let metrics: DNSProxyMetrics

    /// The configuration and the bounds it gives each shard.
    private struct Settings {
        var configuration: Configuration
        var entriesPerShard: Int
        var bytesPerShard: Int

        init(_ configuration: Configuration, shards: Int) {
            self.configuration = configuration
            self.entriesPerShard = max(1, configuration.maximumEntries / shards)
            self.bytesPerShard = max(1, configuration.maximumBytes / shards)
        }

        var staleWindowNanos: UInt64 { UInt64(configuration.staleWindow) * 1_000_000_000 }
    }

    /// Creates an empty cache.
    ///
    /// - Parameters:
    ///   - configuration: Bounds and TTL policy.
    ///   - shardCount: Independently locked shards, so event loops rarely contend; 16.
    ///   - metrics: Where evictions, entries and bytes are reported (each store reports its shard's
    ///     change, including entries a lookup found expired); hits and misses are the handler's.
    public init(
        configuration: Configuration = .init(),
        shardCount: Int = 16,
        metrics: DNSProxyMetrics = DNSProxyMetrics()
    ) {
        self.metrics = metrics
        // A power of two, so picking a shard is a mask rather than a division.
        var count = 1
        while count < min(max(1, shardCount), max(1, configuration.maximumEntries)) { count <<= 1 }
        self.shards = (0..<count).map { _ in NIOLockedValueBox(Shard()) }
        self.settings = NIOLockedValueBox(Settings(configuration, shards: count))
    }

    /// Replaces the bounds and the TTL policy while the cache serves; nothing is flushed. Smaller
    /// bounds evict the least recently used entries down to them at once; entries already stored keep
    /// the lifetime they were given. The number of shards stays as it was made (from the first
    /// configuration's entry bound).
    ///
    /// - Parameter configuration: The new bounds and TTL policy.
    public func update(configuration: Configuration) {
        let next = Settings(configuration, shards: shards.count)
        settings.withLockedValue { $0 = next }
        for shard in shards {
            let change = shard.withLockedValue { shard in
                while !shard.index.isEmpty,
                    shard.index.count > next.entriesPerShard || shard.bytes > next.bytesPerShard
                        || configuration.maximumEntries == 0
                {
                    shard.evictOne()
                }
                return shard.unreportedChange()
            }
            report(change)
        }
    }

    /// Tells the metrics what a shard's change was.
    private func report(_ change: (entries: Int, bytes: Int, evictions: Int)) {
        DNSProxyMetrics.adjust(metrics.cacheEntries, by: change.entries)
        DNSProxyMetrics.adjust(metrics.cacheBytes, by: change.bytes)
        if change.evictions > 0 { metrics.cacheEvictions.increment(by: Int64(change.evictions)) }
    }

    private func shard(for key: DNSCacheKey) -> NIOLockedValueBox<Shard> {
        shards[Int(truncatingIfNeeded: key.first & UInt64(shards.count - 1))]
    }

    public func lookup(_ parsed: ParsedDNSMessage, key: DNSCacheKey, now: NIODeadline) -> ByteBuffer? {
        let (query, view) = (parsed.buffer, parsed.view)
        guard let queryName = view.questionNameRange else { return nil }
        let nowNanos = UInt64(max(0, now.uptimeNanoseconds))
        // Allocated under the lock, only for a hit and at the entry's size: a miss allocates nothing.
        var out: ByteBuffer?
        let found: Found? = shard(for: key).withLockedValue { shard in
            guard let slot = shard.index[key] else { return nil }
            guard shard.answers(slot, query: query, name: queryName, type: view.questionType, class: view.questionClass)
            else {
                shard.remove(slot)
                return nil
            }
            let expiry = shard.expiry(of: slot)
            guard nowNanos < expiry else {
                // Keep an expired entry for serve-stale while its window lasts.
                let settings = self.settings.withLockedValue { $0 }
                if !settings.configuration.serveStale || nowNanos >= expiry + settings.staleWindowNanos {
                    shard.remove(slot)
                }
                return nil
            }
            shard.entries[slot].referenced = true
            return shard.copy(slot, into: &out)
        }
        guard let found, var out = out.take() else { return nil }
        return Self.finish(
            &out,
            found,
            query: query,
            view: view,
            queryName: queryName,
            elapsedNanos: nowNanos &- found.storedAt,
            staleTTL: nil
        )
    }

    /// What a hit needs once the lock is released: the entry's layout; its bytes are already copied.
    private struct Found {
        var length: Int
        var questionNameStart: Int
        var storedAt: UInt64
    }

    /// The TTL of a record served stale (RFC 8767 §4 recommends 30 seconds).
    public static let staleTTL: UInt32 = 30

    public var servesStale: Bool { configuration.serveStale }

    public func lookupStale(_ parsed: ParsedDNSMessage, key: DNSCacheKey, now: NIODeadline) -> ByteBuffer? {
        let (query, view) = (parsed.buffer, parsed.view)
        let settings = self.settings.withLockedValue { $0 }
        guard settings.configuration.serveStale, let queryName = view.questionNameRange else { return nil }
        let nowNanos = UInt64(max(0, now.uptimeNanoseconds))
        var out: ByteBuffer?
        let found: Found? = shard(for: key).withLockedValue { shard in
            guard let slot = shard.index[key] else { return nil }
            // SERVFAIL is never served stale.
            guard shard.entries[slot].storage[3] & 0x0F != UInt8(DNSResponseCode.serverFailure.rawValue),
                nowNanos < shard.expiry(of: slot) + settings.staleWindowNanos,
                shard.answers(slot, query: query, name: queryName, type: view.questionType, class: view.questionClass)
            else { return nil }
            return shard.copy(slot, into: &out)
        }
        guard let found, var out = out.take() else { return nil }
        return Self.finish(
            &out,
            found,
            query: query,
            view: view,
            queryName: queryName,
            elapsedNanos: 0,
            staleTTL: Self.staleTTL
        )
    }

    public func claimPrefetch(key: DNSCacheKey, now: NIODeadline) -> Bool {
        guard settings.withLockedValue({ $0.configuration.prefetch }) else { return false }
        let nowNanos = UInt64(max(0, now.uptimeNanoseconds))
        return shard(for: key).withLockedValue { shard in
            guard let slot = shard.index[key], !shard.entries[slot].prefetchClaimed else { return false }
            let expiry = shard.expiry(of: slot)
            guard nowNanos < expiry, expiry - nowNanos <= shard.entries[slot].lifetime / 10 else { return false }
            shard.entries[slot].prefetchClaimed = true
            return true
        }
    }

    /// Turns the copied storage in `out` into the reply: the client's ID, RD and question name, every
    /// TTL aged by the time in the cache (or set to `staleTTL`), the offsets cut off, and the client's
    /// OPT if it sent one.
    private static func finish(
        _ out: inout ByteBuffer,
        _ found: Found,
        query: ByteBuffer,
        view: DNSMessageView,
        queryName: Range<Int>,
        elapsedNanos: UInt64,
        staleTTL: UInt32?
    ) -> ByteBuffer {
        let elapsed = UInt32(clamping: elapsedNanos / 1_000_000_000)
        out.withUnsafeMutableReadableBytes { bytes in
            bytes[0] = UInt8(view.id >> 8)
            bytes[1] = UInt8(truncatingIfNeeded: view.id)
            // RD as the client asked.
            bytes[2] = bytes[2] & ~0x01 | UInt8(truncatingIfNeeded: view.flags >> 8) & 0x01
            query.withUnsafeReadableBytes { source in
                for offset in 0..<queryName.count {
                    bytes[found.questionNameStart + offset] = source[queryName.lowerBound + offset]
                }
            }
            guard elapsed > 0 || staleTTL != nil else { return }
            var position = found.length
            while position + 1 < bytes.count {
                let offset = Int(bytes[position]) << 8 | Int(bytes[position + 1])
                position += 2
                let ttl =
                    UInt32(bytes[offset]) << 24 | UInt32(bytes[offset + 1]) << 16 | UInt32(bytes[offset + 2]) << 8
                    | UInt32(bytes[offset + 3])
                let aged = staleTTL ?? (ttl > elapsed ? ttl - elapsed : 0)
                bytes[offset] = UInt8(aged >> 24)
                bytes[offset + 1] = UInt8(truncatingIfNeeded: aged >> 16)
                bytes[offset + 2] = UInt8(truncatingIfNeeded: aged >> 8)
                bytes[offset + 3] = UInt8(truncatingIfNeeded: aged)
            }
        }
        out.moveWriterIndex(to: out.readerIndex + found.length)
        if view.optRecordOffset != nil {
            let count = out.getInteger(at: 10, as: UInt16.self) ?? 0
            out.setInteger(count + 1, at: 10)
            EDNSRecord.writeProxyOPT(into: &out, dnssecOK: view.dnssecOK)
        }
        return out
    }

    public func store(_ parsed: ParsedDNSMessage, key: DNSCacheKey, now: NIODeadline) {
        let (reply, view) = (parsed.buffer, parsed.view)
        let settings = self.settings.withLockedValue { $0 }
        guard settings.configuration.maximumEntries > 0, !view.isTruncated, view.questionCount == 1,
            let questionName = view.questionNameRange,
            let lifetime = Self.lifetime(of: reply, view: view, under: settings.configuration), lifetime > 0
        else { return }
        // Drop OPT (hop-by-hop); only when it is the last record can it be cut off cleanly.
        var length = view.length
        var additional = view.additionalCount
        if let optOffset = view.optRecordOffset {
            guard view.optRecordIsLast else { return }
            length = optOffset
            additional -= 1
        }
        guard length <= Int(UInt16.max), length <= settings.bytesPerShard, questionName.upperBound <= length,
            questionName.count <= 255
        else { return }
        // The reply without OPT, then two octets per TTL offset.
        var storage = [UInt8]()
        storage.reserveCapacity(
            length + 2 * (Int(view.answerCount) + Int(view.authorityCount) + Int(view.additionalCount))
        )
        reply.withUnsafeReadableBytes { storage.append(contentsOf: $0.prefix(length)) }
        storage[10] = UInt8(additional >> 8)
        storage[11] = UInt8(truncatingIfNeeded: additional)
        view.forEachRecord(in: reply) { record in
            guard record.type != .opt, record.ttlOffset + 4 <= length else { return }
            storage.append(UInt8(record.ttlOffset >> 8))
            storage.append(UInt8(truncatingIfNeeded: record.ttlOffset))
            let capped = min(record.effectiveTTL, lifetime)
            storage[record.ttlOffset] = UInt8(capped >> 24)
            storage[record.ttlOffset + 1] = UInt8(truncatingIfNeeded: capped >> 16)
            storage[record.ttlOffset + 2] = UInt8(truncatingIfNeeded: capped >> 8)
            storage[record.ttlOffset + 3] = UInt8(truncatingIfNeeded: capped)
        }
        let entry = Entry(
            key: key,
            storage: storage,
            storedAt: UInt64(max(0, now.uptimeNanoseconds)),
            lifetime: UInt64(lifetime) * 1_000_000_000,
            length: UInt16(length),
            questionNameStart: UInt16(questionName.lowerBound),
            questionNameLength: UInt8(questionName.count),
            questionType: view.questionType?.rawValue ?? 0,
            questionClass: view.questionClass?.rawValue ?? 0
        )
        let change = shard(for: key).withLockedValue { shard in
            if let existing = shard.index[key] { shard.remove(existing) }
            while !shard.index.isEmpty,
                shard.index.count >= settings.entriesPerShard || shard.bytes + length > settings.bytesPerShard
            {
                shard.evictOne()
            }
            let slot: Int
            if let reused = shard.free.popLast() {
                slot = reused
                shard.entries[slot] = entry
            } else {
                slot = shard.entries.count
                shard.entries.append(entry)
            }
            shard.index[key] = slot
            shard.bytes += length
            return shard.unreportedChange()
        }
        report(change)
    }

    /// The entry's lifetime when the reply would be cached, and ``Configuration/maximumTTL`` when not.
    public func longestTTL(for reply: ParsedDNSMessage) -> UInt32? {
        let configuration = self.configuration
        return Self.lifetime(of: reply.buffer, view: reply.view, under: configuration) ?? configuration.maximumTTL
    }

    /// How long this cache would keep `reply`, in seconds, and how long after that it may still serve
    /// it stale; `nil` when it would not store it. A second tier stores it for as long.
    package func retention(of reply: ParsedDNSMessage) -> (lifetime: UInt32, staleWindow: UInt32)? {
        let configuration = self.configuration
        guard configuration.maximumEntries > 0, !reply.view.isTruncated, reply.view.questionCount == 1,
            let lifetime = Self.lifetime(of: reply.buffer, view: reply.view, under: configuration), lifetime > 0
        else { return nil }
        return (lifetime, configuration.serveStale ? configuration.staleWindow : 0)
    }

    /// How long a reply may be cached, in seconds, or `nil` when it must not be. TTLs with the top bit
    /// set count as 0 (RFC 2181 §8).
    static func lifetime(of reply: ByteBuffer, view: DNSMessageView, under configuration: Configuration) -> UInt32? {
        switch view.responseCode {
        case .serverFailure:
            return configuration.serverFailureTTL > 0 ? configuration.serverFailureTTL : nil
        case .noError where view.answerCount > 0:
            var minimum = UInt32.max
            view.forEachRecord(in: reply) { record in
                if record.section == 0 { minimum = min(minimum, record.effectiveTTL) }
            }
            return min(max(minimum, configuration.minimumTTL), configuration.maximumTTL)
        case .noError, .nameError:
            // RFC 2308 §5: the SOA in the authority section gives the negative TTL.
            var negative: UInt32?
            view.forEachRecord(in: reply) { record in
                guard record.section == 1, record.type == .soa, record.rdata.count >= 22,
                    let soaMinimum = reply.getInteger(
                        at: reply.readerIndex + record.rdata.upperBound - 4,
                        as: UInt32.self
                    )
                else { return }
                negative = min(record.effectiveTTL, soaMinimum & 0x8000_0000 == 0 ? soaMinimum : 0)
            }
            guard let negative else { return nil }
            return min(negative, configuration.maximumNegativeTTL, configuration.maximumTTL)
        default:
            return nil
        }
    }

    /// How many replies the cache holds now.
    public var count: Int {
        shards.reduce(0) { total, shard in total + shard.withLockedValue { $0.index.count } }
    }

    /// How many octets of replies the cache holds now; at most ``Configuration/maximumBytes``.
    public var bytes: Int {
        shards.reduce(0) { total, shard in total + shard.withLockedValue { $0.bytes } }
    }
}
