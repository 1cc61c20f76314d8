import NIOConcurrencyHelpers
import NIOCore

/// One cache miss between the client and the upstream: what its callbacks need, in one object, so
/// that each captures one reference rather than the query, its view and its promise apiece.
final class PendingMiss: @unchecked Sendable {
    // Immutable but for `followers`, which only changes under the coalescer's lock.
    let query: ParsedQuery
    let replied: EventLoopPromise<ByteBuffer?>
    /// Whether the reply is counted when completed (no race with a stale answer decides later).
    let counted: Bool
    /// Identical misses that arrived while this one was in flight.
    fileprivate(set) var followers: [PendingMiss] = []

    init(query: ParsedQuery, replied: EventLoopPromise<ByteBuffer?>, counted: Bool) {
        self.query = query
        self.replied = replied
        self.counted = counted
    }

    /// Whether `leader`'s answer also answers this miss: the same question (name in any case, type,
    /// class) and the same DO and CD bits, which is everything its cache key hashes.
    func asksSameQuestion(as leader: PendingMiss) -> Bool {
        let view = query.view
        let other = leader.query.view
        return view.dnssecOK == other.dnssecOK && view.checkingDisabled == other.checkingDisabled
            && view.questionMatches(other, in: query.message.buffer, otherBuffer: leader.query.message.buffer)
    }
}

/// Identical misses wait for the query already in flight instead of each going upstream; each is
/// then answered with its own ID and question case. The wait is bounded by the leader's deadline.
///
/// The table is keyed by ``DNSCacheKey``, a hash, so a miss joins only a leader that asks the same
/// question; after a collision it goes upstream on its own, unregistered.
final class MissCoalescer: Sendable {
    private let table = NIOLockedValueBox([DNSCacheKey: PendingMiss]())

    /// How a miss relates to the misses in flight.
    enum Role {
        /// Registered under its key: it goes upstream and answers its followers.
        case leader
        /// Waits for a leader's answer.
        case follower
        /// Not registered (its key's leader asks another question): goes upstream alone.
        case alone
    }

    /// Registers `miss`, or adds it to the followers of an identical miss in flight.
    func join(_ miss: PendingMiss) -> Role {
        let key = miss.query.key
        return table.withLockedValue { table -> Role in
            guard let leader = table[key] else {
                table[key] = miss
                return .leader
            }
            guard miss.asksSameQuestion(as: leader) else { return .alone }
            leader.followers.append(miss)
            return .follower
        }
    }

    /// Takes a leader out of the table once its answer is in, and returns its followers.
    func finish(_ leader: PendingMiss) -> [PendingMiss] {
        table.withLockedValue { table in
            table.removeValue(forKey: leader.query.key)
            return leader.followers
        }
    }

    /// Misses in flight that others may join.
    var count: Int { table.withLockedValue { $0.count } }
}
