import NIOConcurrencyHelpers
import NIOCore

/// The default ``DNSResponseCache``: replies kept in wire form, in sharded LRU tables bounded by
/// entries and by bytes.
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
            maximumEntries: Int = 10_000, maximumBytes: Int = 64 << 20, minimumTTL: UInt32 = 0, maximumTTL: UInt32 = 86_400,
            maximumNegativeTTL: UInt32 = 3_600, serverFailureTTL: UInt32 = 5, serveStale: Bool = false, staleWindow: UInt32 = 86_400,
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

    private struct Entry {
        var key: DNSCacheKey
        var bytes: [UInt8]
        var ttlOffsets: [UInt16]
        var questionName: Range<Int>
        var questionType: UInt16
        var questionClass: UInt16
        var storedAt: UInt64
        var lifetime: UInt64
        var prefetchClaimed = false
        var previous = -1
        var next = -1
    }

    private struct Shard {
        var index: [DNSCacheKey: Int] = [:]
        var entries: [Entry] = []
        var free: [Int] = []
        var head = -1
        var tail = -1
        var bytes = 0
        var statistics = DNSCacheStatistics()

        mutating func unlink(_ slot: Int) {
            let previous = entries[slot].previous
            let next = entries[slot].next
            if previous >= 0 { entries[previous].next = next } else { head = next }
            if next >= 0 { entries[next].previous = previous } else { tail = previous }
            entries[slot].previous = -1
            entries[slot].next = -1
        }

        mutating func pushFront(_ slot: Int) {
            entries[slot].next = head
            entries[slot].previous = -1
            if head >= 0 { entries[head].previous = slot }
            head = slot
            if tail < 0 { tail = slot }
        }

        mutating func remove(_ slot: Int) {
            unlink(slot)
            index.removeValue(forKey: entries[slot].key)
            bytes -= entries[slot].bytes.count
            entries[slot].bytes = []
            entries[slot].ttlOffsets = []
            free.append(slot)
        }
    }

    /// The configuration in effect.
    public let configuration: Configuration
    private let shards: [NIOLockedValueBox<Shard>]
    private let entriesPerShard: Int
    private let bytesPerShard: Int

    /// Creates an empty cache.
    ///
    /// - Parameters:
    ///   - configuration: Bounds and TTL policy.
    ///   - shardCount: Independently locked shards, so event loops rarely contend; 16.
    public init(configuration: Configuration = .init(), shardCount: Int = 16) {
        self.configuration = configuration
        let count = max(1, min(shardCount, max(1, configuration.maximumEntries)))
        self.shards = (0..<count).map { _ in NIOLockedValueBox(Shard()) }
        self.entriesPerShard = max(1, configuration.maximumEntries / count)
        self.bytesPerShard = max(1, configuration.maximumBytes / count)
    }

    private func shard(for key: DNSCacheKey) -> NIOLockedValueBox<Shard> {
        shards[Int(truncatingIfNeeded: key.first % UInt64(shards.count))]
    }

    public func lookup(_ query: ByteBuffer, view: DNSMessageView, now: NIODeadline) -> ByteBuffer? {
        guard let key = DNSCacheKey(query, view: view), let queryName = view.questionNameRange else { return nil }
        let nowNanos = UInt64(max(0, now.uptimeNanoseconds))
        let found: Entry? = shard(for: key).withLockedValue { shard in
            guard let slot = shard.index[key] else {
                shard.statistics.misses += 1
                return nil
            }
            let entry = shard.entries[slot]
            guard Self.sameQuestion(entry, query: query, name: queryName, type: view.questionType, class: view.questionClass) else {
                shard.remove(slot)
                shard.statistics.misses += 1
                return nil
            }
            guard nowNanos < entry.storedAt + entry.lifetime else {
                // Keep an expired entry for serve-stale while its window lasts.
                if !configuration.serveStale || nowNanos >= entry.storedAt + entry.lifetime + staleWindowNanos { shard.remove(slot) }
                shard.statistics.misses += 1
                return nil
            }
            shard.unlink(slot)
            shard.pushFront(slot)
            shard.statistics.hits += 1
            return entry
        }
        guard let entry = found else { return nil }
        return Self.reply(from: entry, query: query, view: view, queryName: queryName, nowNanos: nowNanos)
    }

    private var staleWindowNanos: UInt64 { UInt64(configuration.staleWindow) * 1_000_000_000 }

    /// The TTL of a record served stale (RFC 8767 §4 recommends 30 seconds).
    public static let staleTTL: UInt32 = 30

    public var servesStale: Bool { configuration.serveStale }

    public func lookupStale(_ query: ByteBuffer, view: DNSMessageView, now: NIODeadline) -> ByteBuffer? {
        guard configuration.serveStale, let key = DNSCacheKey(query, view: view), let queryName = view.questionNameRange else { return nil }
        let nowNanos = UInt64(max(0, now.uptimeNanoseconds))
        let found: Entry? = shard(for: key).withLockedValue { shard in
            guard let slot = shard.index[key] else { return nil }
            let entry = shard.entries[slot]
            // SERVFAIL is never served stale.
            guard entry.bytes[3] & 0x0F != UInt8(DNSResponseCode.serverFailure.rawValue),
                nowNanos < entry.storedAt + entry.lifetime + staleWindowNanos,
                Self.sameQuestion(entry, query: query, name: queryName, type: view.questionType, class: view.questionClass)
            else { return nil }
            shard.statistics.staleServed += 1
            return entry
        }
        guard var entry = found else { return nil }
        // Every TTL becomes the stale TTL: pretend the entry was stored with it just now.
        for storedOffset in entry.ttlOffsets {
            let offset = Int(storedOffset)
            entry.bytes[offset] = 0
            entry.bytes[offset + 1] = 0
            entry.bytes[offset + 2] = UInt8(Self.staleTTL >> 8)
            entry.bytes[offset + 3] = UInt8(truncatingIfNeeded: Self.staleTTL)
        }
        return Self.reply(from: entry, query: query, view: view, queryName: queryName, nowNanos: entry.storedAt)
    }

    public func claimPrefetch(_ query: ByteBuffer, view: DNSMessageView, now: NIODeadline) -> Bool {
        guard configuration.prefetch, let key = DNSCacheKey(query, view: view) else { return false }
        let nowNanos = UInt64(max(0, now.uptimeNanoseconds))
        return shard(for: key).withLockedValue { shard in
            guard let slot = shard.index[key], !shard.entries[slot].prefetchClaimed else { return false }
            let entry = shard.entries[slot]
            let expiry = entry.storedAt + entry.lifetime
            guard nowNanos < expiry, expiry - nowNanos <= entry.lifetime / 10 else { return false }
            shard.entries[slot].prefetchClaimed = true
            shard.statistics.prefetches += 1
            return true
        }
    }

    private static func sameQuestion(_ entry: Entry, query: ByteBuffer, name: Range<Int>, type: DNSRecordType?, class klass: DNSClass?) -> Bool {
        guard entry.questionType == type?.rawValue, entry.questionClass == klass?.rawValue, entry.questionName.count == name.count else {
            return false
        }
        return query.withUnsafeReadableBytes { bytes in
            guard name.upperBound <= bytes.count else { return false }
            for offset in 0..<name.count
            where DNSName.lowercase(bytes[name.lowerBound + offset]) != DNSName.lowercase(entry.bytes[entry.questionName.lowerBound + offset]) {
                return false
            }
            return true
        }
    }

    /// Builds the reply in one buffer: stored bytes, the client's ID, RD and question name, aged TTLs,
    /// and the client's OPT.
    private static func reply(from entry: Entry, query: ByteBuffer, view: DNSMessageView, queryName: Range<Int>, nowNanos: UInt64)
        -> ByteBuffer
    {
        let wantsOPT = view.optRecordOffset != nil
        var out = ByteBufferAllocator().buffer(capacity: entry.bytes.count + (wantsOPT ? 11 : 0))
        out.writeBytes(entry.bytes)
        let elapsed = UInt32(clamping: (nowNanos &- entry.storedAt) / 1_000_000_000)
        let dnssecOK = view.dnssecOK
        out.withUnsafeMutableReadableBytes { bytes in
            bytes[0] = UInt8(view.id >> 8)
            bytes[1] = UInt8(truncatingIfNeeded: view.id)
            // RD as the client asked.
            bytes[2] = bytes[2] & ~0x01 | UInt8(truncatingIfNeeded: view.flags >> 8) & 0x01
            query.withUnsafeReadableBytes { source in
                for offset in 0..<queryName.count {
                    bytes[entry.questionName.lowerBound + offset] = source[queryName.lowerBound + offset]
                }
            }
            if elapsed > 0 {
                for storedOffset in entry.ttlOffsets {
                    let offset = Int(storedOffset)
                    let ttl = UInt32(bytes[offset]) << 24 | UInt32(bytes[offset + 1]) << 16 | UInt32(bytes[offset + 2]) << 8 | UInt32(bytes[offset + 3])
                    let aged = ttl > elapsed ? ttl - elapsed : 0
                    bytes[offset] = UInt8(aged >> 24)
                    bytes[offset + 1] = UInt8(truncatingIfNeeded: aged >> 16)
                    bytes[offset + 2] = UInt8(truncatingIfNeeded: aged >> 8)
                    bytes[offset + 3] = UInt8(truncatingIfNeeded: aged)
                }
            }
        }
        if wantsOPT {
            let count = out.getInteger(at: 10, as: UInt16.self) ?? 0
            out.setInteger(count + 1, at: 10)
            EDNSRecord.writeProxyOPT(into: &out, dnssecOK: dnssecOK)
        }
        return out
    }

    public func store(_ reply: ByteBuffer, view: DNSMessageView, query: ByteBuffer, queryView: DNSMessageView, now: NIODeadline) {
        guard configuration.maximumEntries > 0, !view.isTruncated, view.questionCount == 1, let questionName = view.questionNameRange,
            let key = DNSCacheKey(query, view: queryView), let lifetime = lifetime(of: reply, view: view), lifetime > 0
        else { return }
        // Drop OPT (hop-by-hop); only when it is the last record can it be cut off cleanly.
        var length = view.length
        var additional = view.additionalCount
        if let optOffset = view.optRecordOffset {
            var optIsLast = false
            view.forEachRecord(in: reply) { record in
                if record.type == .opt, record.rdata.upperBound == view.length { optIsLast = true }
            }
            guard optIsLast else { return }
            length = optOffset
            additional -= 1
        }
        guard var bytes = reply.getBytes(at: reply.readerIndex, length: length), bytes.count <= bytesPerShard else { return }
        bytes[10] = UInt8(additional >> 8)
        bytes[11] = UInt8(truncatingIfNeeded: additional)
        var ttlOffsets: [UInt16] = []
        view.forEachRecord(in: reply) { record in
            guard record.type != .opt, record.ttlOffset + 4 <= length else { return }
            ttlOffsets.append(UInt16(record.ttlOffset))
            let capped = min(record.ttl, lifetime)
            bytes[record.ttlOffset] = UInt8(capped >> 24)
            bytes[record.ttlOffset + 1] = UInt8(truncatingIfNeeded: capped >> 16)
            bytes[record.ttlOffset + 2] = UInt8(truncatingIfNeeded: capped >> 8)
            bytes[record.ttlOffset + 3] = UInt8(truncatingIfNeeded: capped)
        }
        let entry = Entry(
            key: key, bytes: bytes, ttlOffsets: ttlOffsets, questionName: questionName, questionType: view.questionType?.rawValue ?? 0,
            questionClass: view.questionClass?.rawValue ?? 0, storedAt: UInt64(max(0, now.uptimeNanoseconds)),
            lifetime: UInt64(lifetime) * 1_000_000_000)
        shard(for: key).withLockedValue { shard in
            if let existing = shard.index[key] { shard.remove(existing) }
            while shard.index.count >= entriesPerShard || shard.bytes + bytes.count > bytesPerShard, shard.tail >= 0 {
                shard.remove(shard.tail)
                shard.statistics.evictions += 1
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
            shard.pushFront(slot)
            shard.bytes += bytes.count
            shard.statistics.stores += 1
        }
    }

    /// How long a reply may be cached, in seconds, or `nil` when it must not be.
    func lifetime(of reply: ByteBuffer, view: DNSMessageView) -> UInt32? {
        switch view.responseCode {
        case .serverFailure:
            return configuration.serverFailureTTL > 0 ? configuration.serverFailureTTL : nil
        case .noError where view.answerCount > 0:
            var minimum = UInt32.max
            view.forEachRecord(in: reply) { record in
                if record.section == 0 { minimum = min(minimum, record.ttl) }
            }
            return min(max(minimum, configuration.minimumTTL), configuration.maximumTTL)
        case .noError, .nameError:
            // RFC 2308 §5: the SOA in the authority section gives the negative TTL.
            var negative: UInt32?
            view.forEachRecord(in: reply) { record in
                guard record.section == 1, record.type == .soa, record.rdata.count >= 22,
                    let soaMinimum = reply.getInteger(at: reply.readerIndex + record.rdata.upperBound - 4, as: UInt32.self)
                else { return }
                negative = min(record.ttl, soaMinimum)
            }
            guard let negative else { return nil }
            return min(negative, configuration.maximumNegativeTTL, configuration.maximumTTL)
        default:
            return nil
        }
    }

    /// The counters, summed over shards.
    public var statistics: DNSCacheStatistics {
        var total = DNSCacheStatistics()
        for shard in shards {
            shard.withLockedValue { shard in
                total.hits += shard.statistics.hits
                total.misses += shard.statistics.misses
                total.stores += shard.statistics.stores
                total.staleServed += shard.statistics.staleServed
                total.prefetches += shard.statistics.prefetches
                total.evictions += shard.statistics.evictions
                total.entries += shard.index.count
                total.bytes += shard.bytes
            }
        }
        return total
    }
}
