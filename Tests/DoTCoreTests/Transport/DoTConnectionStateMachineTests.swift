import NIOCore
import Testing

@testable import DoTCore

/// The rules of one DoT connection, as plain values: no channel, no clock.
struct DoTConnectionStateMachineTests {
    static let start = NIODeadline.uptimeNanoseconds(1_000_000_000)

    static func query(id: UInt16 = 7) throws -> DoTQuery {
        let message = try DNSMessage.query(name: "a.test.", type: .a, id: id).encoded()
        return DoTQuery(
            query: try ParsedDNSMessage(message),
            paddingBlockSize: 128,
            deadline: start + .seconds(2),
            completion: { _ in }
        )
    }

    static func machine(firstID: UInt16 = 100, maximumQueries: Int? = nil) -> DoTConnectionStateMachine {
        DoTConnectionStateMachine(firstID: firstID, maximumQueries: maximumQueries, idleTimeout: .seconds(8))
    }

    /// The query to write now, if the machine says so.
    static func written(_ action: DoTConnectionStateMachine.EnqueueAction) -> DoTQuery? {
        if case .write(let query) = action { return query }
        return nil
    }

    /// The ID a query carries on the connection (the frame's first two octets are its length).
    static func connectionID(_ query: DoTQuery) -> UInt16? {
        query.frame.getInteger(at: query.frame.readerIndex + 2, as: UInt16.self)
    }

    @Test func queriesWaitForTheChannelThenLeaveInOrderWithDistinctIDs() throws {
        var machine = Self.machine()
        let first = try Self.query(id: 1)
        let second = try Self.query(id: 1)
        #expect(
            Self.written(machine.enqueue(first)) == nil && Self.written(machine.enqueue(second)) == nil,
            "no channel yet"
        )
        #expect(machine.inFlight == 2 && machine.state == .connecting)
        let written = machine.channelReady()
        #expect(written.count == 2 && written[0] === first && written[1] === second)
        #expect(
            Self.connectionID(first) == 100 && Self.connectionID(second) == 101,
            "the clients' IDs collide; ours do not"
        )
        let third = try Self.query(id: 1)
        #expect(
            Self.written(machine.enqueue(third)) === third && Self.connectionID(third) == 102,
            "ready: written at once"
        )
        #expect(machine.queriesSent == 3)
    }

    @Test func aReplyIsMatchedByIDAndQuestionAndTheLastOneArmsTheIdleCheck() throws {
        var machine = Self.machine()
        _ = machine.channelReady()
        let query = try Self.query()
        _ = machine.enqueue(query)
        guard case .unmatched = machine.replyArrived(id: 999, now: Self.start, matches: { _ in true }) else {
            Issue.record("an unknown ID is unmatched")
            return
        }
        guard case .unmatched = machine.replyArrived(id: 100, now: Self.start, matches: { _ in false }) else {
            Issue.record("another question is unmatched")
            return
        }
        guard
            case .deliver(let answered, let then) = machine.replyArrived(
                id: 100,
                now: Self.start,
                matches: { _ in true }
            )
        else {
            Issue.record("the reply answers the query")
            return
        }
        #expect(answered === query && then == .armIdleCheck(at: Self.start + .seconds(8)))
        #expect(machine.inFlight == 0 && machine.idleSince == Self.start)
    }

    @Test func theIdleCheckClosesOnlyAfterAWholeTimeoutWithoutQueries() throws {
        var machine = Self.machine()
        _ = machine.channelReady()
        _ = machine.enqueue(try Self.query())
        _ = machine.replyArrived(id: 100, now: Self.start, matches: { _ in true })
        // Busy again at 3 s, idle again at 5 s: the check at 8 s looks again at 13 s.
        _ = machine.enqueue(try Self.query())
        guard
            case .deliver(_, let then) = machine.replyArrived(
                id: 101,
                now: Self.start + .seconds(5),
                matches: { _ in true }
            )
        else {
            Issue.record("delivered")
            return
        }
        #expect(then == .none, "the check is armed once")
        #expect(machine.idleCheckFired(now: Self.start + .seconds(8)) == .armIdleCheck(at: Self.start + .seconds(13)))
        #expect(machine.idleCheckFired(now: Self.start + .seconds(13)) == .close(reason: "idle"))
    }

    @Test func aQueryLimitDrainsAndTheLastReplyRetiresTheConnection() throws {
        var machine = Self.machine(maximumQueries: 2)
        _ = machine.channelReady()
        _ = machine.enqueue(try Self.query())
        #expect(machine.acceptsQueries)
        _ = machine.enqueue(try Self.query())
        #expect(!machine.acceptsQueries && machine.isDraining)
        _ = machine.replyArrived(id: 100, now: Self.start, matches: { _ in true })
        guard case .deliver(_, let then) = machine.replyArrived(id: 101, now: Self.start, matches: { _ in true }) else {
            Issue.record("delivered")
            return
        }
        #expect(then == .close(reason: "connection retired"))
    }

    @Test func twoDeadlinesInARowMarkTheConnectionDead() throws {
        var machine = Self.machine()
        _ = machine.channelReady()
        machine.tlsHandshakeCompleted()
        let first = try Self.query()
        let second = try Self.query()
        let third = try Self.query()
        for query in [first, second, third] { _ = machine.enqueue(query) }
        #expect(machine.expire(try Self.query(), now: Self.start) == .none, "another connection's query")
        #expect(machine.expire(first, now: Self.start) == .none && machine.acceptsQueries, "one timeout is not enough")
        #expect(
            machine.expire(second, now: Self.start) == .none && !machine.acceptsQueries,
            "drains, one still in flight"
        )
        #expect(machine.expire(third, now: Self.start) == .close(reason: "upstream stopped answering"))
    }

    @Test func onCloseQueriesAreRetriedOnceAfterAHandshakeAndFailedBefore() throws {
        var beforeHandshake = Self.machine()
        let early = try Self.query()
        _ = beforeHandshake.enqueue(early)
        let closed = beforeHandshake.closed()
        let failed = try #require(closed)
        #expect(failed.retry.isEmpty && failed.fail.count == 1 && failed.fail[0] === early)
        let again = beforeHandshake.closed()
        #expect(again == nil, "closes once")
        guard case .refuse = beforeHandshake.enqueue(try Self.query()) else {
            Issue.record("a closed connection sends a query elsewhere")
            return
        }
        #expect(!beforeHandshake.acceptsQueries)

        var established = Self.machine()
        _ = established.channelReady()
        established.tlsHandshakeCompleted()
        let fresh = try Self.query()
        let movedOnce = try Self.query()
        movedOnce.retried = true
        _ = established.enqueue(fresh)
        _ = established.enqueue(movedOnce)
        let closedAfterHandshake = established.closed()
        let orphans = try #require(closedAfterHandshake)
        #expect(orphans.retry.count == 1 && orphans.retry[0] === fresh)
        #expect(orphans.fail.count == 1 && orphans.fail[0] === movedOnce, "a query is moved at most once")
    }
}
