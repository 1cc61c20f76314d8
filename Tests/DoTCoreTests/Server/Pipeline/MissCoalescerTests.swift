import Logging
import NIOCore
import NIOEmbedded
import Testing

@testable import DoTCore

/// Which misses may wait for another's upstream answer. The table of misses in flight is keyed by a
/// 64-bit hash (`DNSCacheKey`), so a collision must not hand one question's answer to another.
struct MissCoalescerTests {
    let loop = EmbeddedEventLoop()

    func miss(
        _ name: DNSName,
        _ type: DNSRecordType = .a,
        dnssecOK: Bool = false,
        checkingDisabled: Bool = false
    ) throws -> PendingMiss {
        var query = DNSMessage.query(name: name, type: type, id: 7, edns: EDNSRecord(dnssecOK: dnssecOK))
        query.header.checkingDisabled = checkingDisabled
        let message = try query.encoded()
        let client = try SocketAddress(ipAddress: "127.0.0.1", port: 5300)
        let promise = loop.makePromise(of: ByteBuffer?.self)
        defer { promise.succeed(nil) }
        let parsed = try ParsedQuery(message, client: client)
        return PendingMiss(query: parsed, replied: promise, counted: true)
    }

    @Test func theSameQuestionInAnotherCaseJoins() throws {
        #expect(try miss("Herd.TEST.").asksSameQuestion(as: miss("herd.test.")))
    }

    @Test func anotherNameTypeOrFlagDoesNotJoin() throws {
        let leader = try miss("herd.test.")
        #expect(try !miss("other.test.").asksSameQuestion(as: leader))
        #expect(try !miss("herd.test.", .aaaa).asksSameQuestion(as: leader))
        #expect(try !miss("herd.test.", dnssecOK: true).asksSameQuestion(as: leader))
        #expect(try !miss("herd.test.", checkingDisabled: true).asksSameQuestion(as: leader))
    }

    @Test func theFirstMissLeadsIdenticalOnesFollowAndFinishingHandsThemOver() throws {
        let coalescer = MissCoalescer()
        let leader = try miss("herd.test.")
        guard case .leader = coalescer.join(leader) else {
            Issue.record("the first miss must lead")
            return
        }
        let followers = try (0..<3).map { _ in try miss("HERD.test.") }
        for follower in followers {
            guard case .follower = coalescer.join(follower) else {
                Issue.record("an identical miss must follow")
                return
            }
        }
        // Another question leads its own entry.
        guard case .leader = coalescer.join(try miss("herd.test.", .aaaa)) else {
            Issue.record("another question must lead its own entry")
            return
        }
        #expect(coalescer.count == 2)
        let handedOver = coalescer.finish(leader)
        #expect(handedOver.count == 3 && handedOver.allSatisfy { follower in followers.contains { $0 === follower } })
        #expect(coalescer.count == 1, "the finished leader left the table")
        // The next identical miss leads again.
        guard case .leader = coalescer.join(try miss("herd.test.")) else {
            Issue.record("after the leader finished, a new miss leads")
            return
        }
    }

    @Test func aMissWhoseKeyCollidesWithAnotherQuestionGoesUpstreamAlone() throws {
        let coalescer = MissCoalescer()
        let leader = try miss("herd.test.")
        #expect(coalescer.join(leader) == .leader)
        // Another question filed under the leader's key, as a 64-bit hash collision would.
        let message = try DNSMessage.query(name: "other.test.", type: .a, id: 8).encoded()
        let colliding = PendingMiss(
            query: try ParsedQuery(
                message,
                client: try SocketAddress(ipAddress: "127.0.0.1", port: 5301),
                key: leader.query.key
            ),
            replied: loop.makePromise(of: ByteBuffer?.self),
            counted: true
        )
        defer { colliding.replied.succeed(nil) }
        #expect(coalescer.join(colliding) == .alone)
        #expect(coalescer.finish(leader).isEmpty, "the colliding miss is nobody's follower")
    }
}
