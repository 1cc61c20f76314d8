import NIOCore

/// What one DoT connection knows about its queries, as a value: the IDs it gives them, the queries
/// waiting for the channel and for their replies, whether it is draining, when it became idle, and
/// what becomes of its queries when it closes.
///
/// It does no I/O and reads no clock: each method takes the instant it needs and returns what the
/// connection must do, which ``DoTConnection`` (the NIO shell around it) does. So every rule here is
/// tested as plain values.
struct DoTConnectionStateMachine {
    /// Where the connection is in its life.
    enum State: Equatable {
        /// The channel is being set up; queries wait in order.
        case connecting
        /// Queries are written as they come (TLS holds them until the handshake is done).
        case ready
        /// Closed for good; its queries were handed back.
        case closed
    }

    /// What to do after an event that may leave the connection without queries.
    enum IdleAction: Equatable {
        case none
        /// Close the connection gracefully, for this reason.
        case close(reason: String)
        /// Check for idleness at this instant (the check is armed at most once).
        case armIdleCheck(at: NIODeadline)
    }

    /// What to do with a query handed to the connection.
    enum EnqueueAction {
        /// Write it now: its connection ID is set.
        case write(DoTQuery)
        /// Nothing yet: it waits for the channel.
        case wait
        /// The connection has closed: send it elsewhere.
        case refuse
    }

    /// What to do with a reply.
    enum ReplyAction {
        /// Deliver the reply to this query, then do `then`.
        case deliver(DoTQuery, then: IdleAction)
        /// No pending query has this ID and question: drop and count it.
        case unmatched
    }

    private(set) var state = State.connecting
    /// Set when the connection must take no new queries: its query limit or age reached, or it looks
    /// dead. It closes once its last query is answered.
    private(set) var isDraining = false
    private(set) var handshakeCompleted = false
    private(set) var queriesSent = 0
    /// Queries waiting for the channel.
    private var queued: [DoTQuery] = []
    /// Queries written, by the ID used on this connection.
    private var pending: [UInt16: DoTQuery] = [:]
    private var nextID: UInt16
    private var consecutiveTimeouts = 0
    /// When the last query in flight was answered or expired; `nil` while never idle.
    private(set) var idleSince: NIODeadline?
    private var idleCheckArmed = false
    private let maximumQueries: Int?
    private let idleTimeout: TimeAmount

    /// - Parameters:
    ///   - firstID: The ID the first query gets (random, so IDs are not predictable).
    ///   - maximumQueries: Queries after which the connection drains; `nil` for no limit.
    ///   - idleTimeout: How long the connection may stay without queries before it closes.
    init(firstID: UInt16, maximumQueries: Int?, idleTimeout: TimeAmount) {
        self.nextID = firstID
        self.maximumQueries = maximumQueries
        self.idleTimeout = idleTimeout
    }

    /// Queries waiting for the channel or for their replies.
    var inFlight: Int { queued.count + pending.count }

    /// Whether the connection takes new queries.
    var acceptsQueries: Bool { state != .closed && !isDraining }

    // MARK: Queries

    /// Takes a query: to write now, with its connection ID set, or to keep until the channel is ready.
    mutating func enqueue(_ query: DoTQuery) -> EnqueueAction {
        switch state {
        case .connecting:
            queued.append(query)
            return .wait
        case .ready:
            assignID(to: query)
            return .write(query)
        case .closed:
            return .refuse
        }
    }

    private mutating func assignID(to query: DoTQuery) {
        var id = nextID
        while pending[id] != nil { id &+= 1 }
        nextID = id &+ 1
        query.setConnectionID(id)
        pending[id] = query
        queriesSent += 1
        if let maximumQueries, queriesSent >= maximumQueries { isDraining = true }
    }

    /// The channel is set up: returns the waiting queries to write, in order, with their IDs set.
    mutating func channelReady() -> [DoTQuery] {
        guard state == .connecting else { return [] }
        state = .ready
        let waiting = queued.filter { !$0.isDone }
        queued.removeAll()
        for query in waiting { assignID(to: query) }
        return waiting
    }

    mutating func tlsHandshakeCompleted() {
        handshakeCompleted = true
    }

    /// A reply with `id` arrived; `matches` tells whether it answers a pending query's question.
    mutating func replyArrived(id: UInt16, now: NIODeadline, matches: (DoTQuery) -> Bool) -> ReplyAction {
        guard let query = pending[id], matches(query) else { return .unmatched }
        pending.removeValue(forKey: id)
        consecutiveTimeouts = 0
        return .deliver(query, then: idleActionIfNoQueries(now: now))
    }

    /// `query`'s deadline passed: forget it, if it is on this connection. Two deadlines in a row with
    /// no reply between, or one before the handshake completed, mean a half-open or stuck connection:
    /// it drains, and closes once nothing is left in flight.
    mutating func expire(_ query: DoTQuery, now: NIODeadline) -> IdleAction {
        if let index = queued.firstIndex(where: { $0 === query }) {
            queued.remove(at: index)
        } else if let entry = pending.first(where: { $0.value === query }) {
            pending.removeValue(forKey: entry.key)
        } else {
            return .none
        }
        consecutiveTimeouts += 1
        if consecutiveTimeouts >= 2 || !handshakeCompleted {
            isDraining = true
            if inFlight == 0 { return .close(reason: "upstream stopped answering") }
        }
        return idleActionIfNoQueries(now: now)
    }

    /// Takes no new queries from now on, and closes once the last one is answered.
    mutating func drain() {
        isDraining = true
    }

    /// Calls `body` with every query waiting for the channel or for its reply.
    func forEachQuery(_ body: (DoTQuery) -> Void) {
        for query in queued { body(query) }
        for query in pending.values { body(query) }
    }

    // MARK: Idleness

    private mutating func idleActionIfNoQueries(now: NIODeadline) -> IdleAction {
        guard inFlight == 0, state == .ready else { return .none }
        if isDraining { return .close(reason: "connection retired") }
        idleSince = now
        guard !idleCheckArmed else { return .none }
        idleCheckArmed = true
        return .armIdleCheck(at: now + idleTimeout)
    }

    /// The idle check fired: close if the connection has been idle for the whole timeout, or check
    /// again when it will have been. A connection busy at the check is checked again once next idle.
    mutating func idleCheckFired(now: NIODeadline) -> IdleAction {
        idleCheckArmed = false
        guard inFlight == 0, state == .ready, let idleSince else { return .none }
        let closesAt = idleSince + idleTimeout
        if now >= closesAt { return .close(reason: "idle") }
        idleCheckArmed = true
        return .armIdleCheck(at: closesAt)
    }

    // MARK: Closing

    /// The connection closed: every query it held, to retry elsewhere once (if the handshake had
    /// completed, since an upstream may reset an idle connection at any time) or to fail with the
    /// connection's error. `nil` if it had already closed.
    mutating func closed() -> (retry: [DoTQuery], fail: [DoTQuery])? {
        guard state != .closed else { return nil }
        state = .closed
        let orphans = (queued + pending.values.sorted { $0.query.view.id < $1.query.view.id }).filter { !$0.isDone }
        queued.removeAll()
        pending.removeAll()
        guard handshakeCompleted else { return ([], orphans) }
        return (orphans.filter { !$0.retried }, orphans.filter(\.retried))
    }
}
