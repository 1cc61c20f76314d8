import DoTCore
import NIOConcurrencyHelpers
import NIOCore

/// A `DNSResponseCache` written outside the library: every positive or negative answer is kept for
/// a fixed lifetime (whatever its TTLs say, capped by them), up to a number of entries, oldest out
/// first. It shows the parts a cache has to get right with DoTCore's public wire API:
///
/// - the key (`DNSCacheKey`: case-folded name, type, class, DO and CD);
/// - only answers worth keeping (no truncated replies, no SERVFAIL);
/// - a hit carries the client's ID and the client's spelling of the name, with TTLs aged;
/// - OPT is hop-by-hop: it is cut from the stored copy when the client sent none.
final class FixedLifetimeCache: DNSResponseCache {
    private struct Entry {
        var reply: ByteBuffer
        var view: DNSMessageView
        var stored: NIODeadline
    }

    private let lifetime: TimeAmount
    private let capacity: Int
    private let state = NIOLockedValueBox((entries: [DNSCacheKey: Entry](), order: [DNSCacheKey]()))

    init(lifetime: TimeAmount, capacity: Int) {
        self.lifetime = lifetime
        self.capacity = max(1, capacity)
    }

    var count: Int { state.withLockedValue { $0.entries.count } }

    func lookup(_ parsed: ParsedDNSMessage, key: DNSCacheKey, now: NIODeadline) -> ByteBuffer? {
        let (query, view) = (parsed.buffer, parsed.view)
        guard let entry = state.withLockedValue({ $0.entries[key] }) else { return nil }
        let age = now - entry.stored
        guard age < lifetime, entry.view.questionMatches(view, in: entry.reply, otherBuffer: query) else { return nil }
        var reply = entry.reply
        entry.view.setID(view.id, in: &reply)
        // The client's spelling of the name (0x20 case randomisation survives the cache).
        if let from = view.questionNameRange, let to = entry.view.questionNameRange, from.count == to.count,
            let bytes = query.getBytes(at: query.readerIndex + from.lowerBound, length: from.count)
        {
            reply.setBytes(bytes, at: reply.readerIndex + to.lowerBound)
        }
        entry.view.ageTTLs(by: UInt32(clamping: age.nanoseconds / 1_000_000_000), in: &reply)
        if view.optRecordOffset == nil { Self.removeOPT(from: &reply, view: entry.view) }
        return reply
    }

    func store(_ reply: ParsedDNSMessage, key: DNSCacheKey, now: NIODeadline) {
        let view = reply.view
        guard !view.isTruncated, view.responseCode == .noError || view.responseCode == .nameError else { return }
        // A copy of just the reply, so the cache does not pin a larger receive buffer. The view indexes
        // the same octets, so it serves the copy too.
        var copy = ByteBuffer()
        copy.writeImmutableBuffer(reply.buffer)
        state.withLockedValue { state in
            if state.entries.updateValue(Entry(reply: copy, view: view, stored: now), forKey: key) == nil {
                state.order.append(key)
            }
            while state.entries.count > capacity, !state.order.isEmpty {
                state.entries.removeValue(forKey: state.order.removeFirst())
            }
        }
    }

    /// Cuts the OPT record off when it is the last record (where servers put it); otherwise leaves
    /// the reply alone.
    private static func removeOPT(from reply: inout ByteBuffer, view: DNSMessageView) {
        guard let offset = view.optRecordOffset, view.optRecordIsLast else { return }
        reply.setInteger(view.additionalCount - 1, at: reply.readerIndex + 10)
        reply.moveWriterIndex(to: reply.readerIndex + offset)
    }
}
