import Logging
import NIOConcurrencyHelpers
import NIOCore
import ServiceLifecycle

/// An ``UpstreamTransport`` over several upstreams, with selection, failover and health.
///
/// Each query goes to the upstream a ``UpstreamSelectionPolicy`` picks among those that are up. When
/// it times out, cannot connect, loses its connection, or gets a reply whose response code is one of
/// ``Configuration/failoverResponseCodes`` (SERVFAIL and REFUSED by default), it is retried on another
/// upstream, at most once per upstream and within the query's own deadline: each attempt gets an
/// equal share of the time left, so a silent upstream cannot use it all.
///
/// Health is passive: ``Configuration/maximumFailures`` consecutive errors (not failover replies; an
/// upstream that answers is alive) mark an upstream down. While down it gets no queries, and a probe
/// query (`. IN NS` by default) is sent after 1 s, then 2 s, 4 s… up to a cap; any well-formed reply
/// to it, whatever its response code, brings the upstream back: liveness is a reply. Optional active
/// checks probe every upstream at a fixed interval.
///
/// While every upstream is down, each is probed every ``Configuration/initialProbeDelay`` (no
/// back-off), most queries fail at once with ``UpstreamError/Code/noUpstreamAvailable`` rather than
/// queueing behind dead servers, and one query per ``Configuration/recoveryQueryInterval`` is sent
/// anyway, to the upstream heard failing least recently, so that the first reply restores service
/// (as CoreDNS's forwarder does). A short outage of every upstream therefore ends for clients within
/// about a second of the first one answering again.
///
/// The first failure of each kind from each upstream is logged at warning level, then at most once
/// per ``failureLogInterval`` with the number left unlogged. A failure to open a local socket
/// (``UpstreamError/Code/localResourcesExhausted``) or a full connection (``UpstreamError/Code/overloaded``)
/// is the proxy's own, and never counts against an upstream's health.
///
/// Members are any ``UpstreamTransport``, usually one ``DoTUpstreamTransport`` each, with its own
/// connections, authentication name and pins.
///
/// The members and the configuration can be replaced while the pool serves (``update(members:configuration:)``),
/// as a configuration reload does: a member that stays keeps its connections, health and latency.
///
/// The pool is a `Service`: run it in the same `ServiceGroup` as the ``DNSProxyServer`` that uses it,
/// listed before the server, so that on shutdown the server drains first. ``run()`` starts the
/// members (host-name members start resolving) and the active checks; on graceful shutdown it stops
/// the probes and closes every member's connections. A pool that is not run still forwards, fails
/// over and probes members that went down, but makes no active checks.
public final class UpstreamPool: UpstreamTransport, Service {
    /// One upstream in the pool.
    public struct Member: Sendable {
        /// The name used in logs and metrics, such as `9.9.9.9:853#dns.quad9.net`.
        public var name: String
        /// Where its queries go.
        public var transport: any UpstreamTransport
        /// The longest an attempt at this member may take, within the query's own deadline; `nil`
        /// leaves it the share of the deadline the pool gives each attempt.
        public var timeout: TimeAmount?

        /// Creates a member.
        ///
        /// - Parameters:
        ///   - name: Its name in logs and metrics.
        ///   - transport: Its transport.
        ///   - timeout: The longest an attempt at it may take; none by default.
        public init(name: String, transport: any UpstreamTransport, timeout: TimeAmount? = nil) {
            self.name = name
            self.transport = transport
            self.timeout = timeout
        }

        /// A member for a DoT transport, under the transport's name.
        ///
        /// - Parameter transport: The transport.
        public init(_ transport: DoTUpstreamTransport) {
            self.init(name: transport.name, transport: transport)
        }
    }

    /// How the pool chooses, fails over and checks health.
    public struct Configuration: Sendable {
        /// Chooses the upstream for each attempt.
        public var policy: any UpstreamSelectionPolicy
        /// Consecutive errors that mark an upstream down.
        public var maximumFailures: Int
        /// Reply codes that make a query move on to another upstream.
        public var failoverResponseCodes: Set<DNSResponseCode>
        /// The delay before the first probe of a down upstream; it doubles after each failed probe.
        public var initialProbeDelay: TimeAmount
        /// The longest delay between probes.
        public var maximumProbeDelay: TimeAmount
        /// How long a probe may take.
        public var probeTimeout: TimeAmount
        /// The probe's question name.
        public var probeName: DNSName
        /// The probe's question type.
        public var probeType: DNSRecordType
        /// Probe every upstream at this interval as well, if set; a failed check counts as an error.
        public var healthCheckInterval: TimeAmount?
        /// While every upstream is down, one client query per this interval is sent anyway; `nil`
        /// fails them all until a probe succeeds.
        public var recoveryQueryInterval: TimeAmount?

        /// Creates a configuration.
        ///
        /// - Parameters:
        ///   - policy: The selection policy; least outstanding by default.
        ///   - maximumFailures: Consecutive errors before an upstream is marked down; 3. Values below 1
        ///     count as 1.
        ///   - failoverResponseCodes: Reply codes that fail over; SERVFAIL and REFUSED.
        ///   - initialProbeDelay: The first probe's delay; 1 s.
        ///   - maximumProbeDelay: The cap on the probe delay; 60 s.
        ///   - probeTimeout: How long a probe may take; 2 s.
        ///   - probeName: The probe's name; the root.
        ///   - probeType: The probe's type; NS.
        ///   - healthCheckInterval: Active checks' interval; none (passive only).
        ///   - recoveryQueryInterval: While every upstream is down, one client query per this interval
        ///     still goes out; 100 ms.
        public init(
            policy: any UpstreamSelectionPolicy = .leastOutstanding,
            maximumFailures: Int = 3,
            failoverResponseCodes: Set<DNSResponseCode> = [.serverFailure, .refused],
            initialProbeDelay: TimeAmount = .seconds(1),
            maximumProbeDelay: TimeAmount = .seconds(60),
            probeTimeout: TimeAmount = .seconds(2),
            probeName: DNSName = .root,
            probeType: DNSRecordType = .ns,
            healthCheckInterval: TimeAmount? = nil,
            recoveryQueryInterval: TimeAmount? = .milliseconds(100)
        ) {
            self.policy = policy
            self.maximumFailures = max(1, maximumFailures)
            self.failoverResponseCodes = failoverResponseCodes
            self.initialProbeDelay = initialProbeDelay
            self.maximumProbeDelay = maximumProbeDelay
            self.probeTimeout = probeTimeout
            self.probeName = probeName
            self.probeType = probeType
            self.healthCheckInterval = healthCheckInterval
            self.recoveryQueryInterval = recoveryQueryInterval
        }
    }

    /// The most members a pool holds.
    public static let maximumMembers = 64
    /// After a failure of one kind from one upstream is logged, further failures of that kind from it
    /// are logged at most this often.
    public static let failureLogInterval = TimeAmount.seconds(60)

    /// The members, in configured order.
    public var members: [Member] { state.withLockedValue { $0.slots.map(\.member) } }
    /// The configuration in effect.
    public var configuration: Configuration { state.withLockedValue { $0.settings.configuration } }
    private let healthEventLoop: any EventLoop
    private let metrics: DNSProxyMetrics
    private let logger: Logger
    private let state: NIOLockedValueBox<State>

    /// What the configuration implies, worked out once per configuration.
    private struct Settings {
        var configuration: Configuration
        /// `failoverResponseCodes` as a bit per header RCODE (0-15), so a reply is checked without
        /// hashing.
        var failoverMask: UInt16
        var probeQuery: ParsedDNSMessage?

        init(_ configuration: Configuration) {
            self.configuration = configuration
            self.failoverMask = configuration.failoverResponseCodes.reduce(0) { mask, code in
                code.rawValue < 16 ? mask | 1 << code.rawValue : mask
            }
            self.probeQuery = try? ParsedDNSMessage(
                DNSMessage.query(name: configuration.probeName, type: configuration.probeType, id: 0).encoded()
            )
        }
    }

    /// One member and everything the pool knows of it.
    private struct Slot {
        /// Stays with the member through updates, so that a callback finds it after others moved.
        let id: Int
        /// Replaced by an update that keeps the member, for its new timeout.
        var member: Member
        let metrics: UpstreamMetrics
        var health = UpstreamHealth()
        /// Queries in flight to it, for the least-outstanding policy.
        var outstanding = 0
        var latencyNanoseconds: Double?
        var scheduled: Scheduled<Void>?
        /// By error code: when a failure was last logged, and how many since were not.
        var failureLog: [UpstreamError.Code: (logged: NIODeadline, unlogged: Int)] = [:]

        init(id: Int, member: Member, metrics: UpstreamMetrics) {
            self.id = id
            self.member = member
            self.metrics = metrics
        }
    }

    private struct State {
        var slots: [Slot]
        var settings: Settings
        var policy: any UpstreamSelectionPolicy
        var nextID: Int
        /// Changes with every update, so that a query in flight forgets the positions it tried.
        var generation = 0
        var candidates: [UpstreamCandidate] = []
        var activeCheck: RepeatedTask?
        /// Whether ``start()`` ran.
        var started = false
        var isShutDown = false
        /// While every member is down, the next client query may go out from this time on.
        var nextRecoveryQuery = NIODeadline.uptimeNanoseconds(0)

        func index(of id: Int) -> Int? { slots.firstIndex { $0.id == id } }
    }

    /// Creates a pool. Nothing connects until the first query; active checks start with ``start()``.
    ///
    /// - Parameters:
    ///   - members: The upstreams, in order (the order matters to the sequential and round-robin
    ///     policies); between 1 and ``maximumMembers``.
    ///   - configuration: Selection, failover and health settings.
    ///   - healthEventLoop: Runs probe timers and probes. Tests pass an `EmbeddedEventLoop` to drive
    ///     the back-off with a manual clock.
    ///   - metrics: Where each member's queries, errors by kind, reply time and up/down state are
    ///     reported, labelled with the member's name.
    ///   - logger: Receives a warning when an upstream goes down and a notice when it comes back.
    public init(
        members: [Member],
        configuration: Configuration = Configuration(),
        healthEventLoop: any EventLoop,
        metrics: DNSProxyMetrics = DNSProxyMetrics(),
        logger: Logger = Logger(label: "dotproxy.pool")
    ) {
        precondition(
            (1...Self.maximumMembers).contains(members.count),
            "an upstream pool holds 1 to \(Self.maximumMembers) members"
        )
        self.healthEventLoop = healthEventLoop
        self.metrics = metrics
        self.logger = logger
        let slots = members.enumerated().map { id, member in
            Slot(id: id, member: member, metrics: metrics.upstream(member.name))
        }
        for slot in slots { slot.metrics.up.record(1) }
        self.state = NIOLockedValueBox(
            State(
                slots: slots,
                settings: Settings(configuration),
                policy: configuration.policy,
                nextID: members.count
            )
        )
    }

    // MARK: Lifecycle

    /// Starts the members and the active checks (``start()``), then waits for graceful shutdown (or
    /// cancellation), and stops (``shutdown()``).
    public func run() async throws {
        start()
        try? await gracefulShutdown()
        await shutdown()
    }

    /// ``start()``, for a pool that is itself a member of another.
    public func start(on eventLoop: any EventLoop) {
        start()
    }

    /// Stops the probes and active checks, and closes every member's connections.
    public func shutdown() async {
        stopHealthChecks()
        for member in members { await member.transport.shutdown() }
    }

    /// Starts the members (host-name members start resolving) and the active checks, once; ``run()``
    /// calls it. For a pool that is not run as a service.
    public func start() {
        let members = state.withLockedValue { state -> [Member]? in
            guard !state.started, !state.isShutDown else { return nil }
            state.started = true
            scheduleActiveChecks(in: &state)
            return state.slots.map(\.member)
        }
        for member in members ?? [] { member.transport.start(on: healthEventLoop) }
    }

    /// Replaces the members and the configuration while the pool serves.
    ///
    /// A member of `members` with the name and the transport (the same object) of a current member
    /// is that member: it keeps its connections, health, back-off and latency, and takes
    /// the new member's timeout. Others are
    /// new, start up and are started at once if the pool runs. Queries in flight finish with the
    /// members they were sent to, and may fail over to the new ones.
    ///
    /// - Parameters:
    ///   - members: The upstreams, in order; between 1 and ``maximumMembers``.
    ///   - configuration: Selection, failover and health settings; the policy starts afresh.
    /// - Returns: The members that left the pool. Shut their transports down (``UpstreamTransport/shutdown()``)
    ///   once the queries sent to them have had time to finish, unless they serve elsewhere.
    @discardableResult
    public func update(members: [Member], configuration: Configuration) -> [Member] {
        precondition(
            (1...Self.maximumMembers).contains(members.count),
            "an upstream pool holds 1 to \(Self.maximumMembers) members"
        )
        let (added, removed) = state.withLockedValue { state -> ([Member], [Member]) in
            var old = state.slots
            var slots: [Slot] = []
            var added: [Member] = []
            for member in members {
                if let match = old.firstIndex(where: { Self.isSame($0.member, member) }) {
                    var slot = old.remove(at: match)
                    slot.member = member
                    slots.append(slot)
                } else {
                    let slot = Slot(id: state.nextID, member: member, metrics: metrics.upstream(member.name))
                    state.nextID += 1
                    slot.metrics.up.record(1)
                    slots.append(slot)
                    added.append(member)
                }
            }
            for slot in old { slot.scheduled?.cancel() }
            state.slots = slots
            state.settings = Settings(configuration)
            state.policy = configuration.policy
            state.generation += 1
            state.activeCheck?.cancel()
            state.activeCheck = nil
            if state.started, !state.isShutDown { scheduleActiveChecks(in: &state) }
            return (state.started && !state.isShutDown ? added : [], old.map(\.member))
        }
        for member in added { member.transport.start(on: healthEventLoop) }
        return removed
    }

    /// Whether two members are one: the same name and the same transport object.
    private static func isSame(_ a: Member, _ b: Member) -> Bool {
        guard a.name == b.name else { return false }
        guard type(of: a.transport) is AnyClass, type(of: b.transport) is AnyClass else { return false }
        return (a.transport as AnyObject) === (b.transport as AnyObject)
    }

    private func scheduleActiveChecks(in state: inout State) {
        guard let interval = state.settings.configuration.healthCheckInterval else { return }
        state.activeCheck = healthEventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) {
            [weak self] _ in
            self?.checkAll()
        }
    }

    // MARK: Sending

    /// `pool`, as errors give it.
    public var name: String { "pool" }

    public func send(
        _ query: ParsedDNSMessage,
        deadline: NIODeadline,
        on eventLoop: any EventLoop,
        completion: @escaping @Sendable (Result<ParsedDNSMessage, UpstreamError>) -> Void
    ) {
        attempt(Attempt(query: query, deadline: deadline, eventLoop: eventLoop, completion: completion))
    }

    /// One query's progress through the pool. A class, so that each try and its callback share it
    /// instead of copying (and retaining) every field.
    private final class Attempt: @unchecked Sendable {
        // Touched by one try at a time: each try starts from the previous one's callback.
        let query: ParsedDNSMessage
        let deadline: NIODeadline
        let eventLoop: any EventLoop
        let completion: @Sendable (Result<ParsedDNSMessage, UpstreamError>) -> Void
        /// The positions tried, a bit each, in the pool's `generation`.
        var tried: UInt64 = 0
        var generation: Int?
        var previous: Int?
        var lastReply: ParsedDNSMessage?
        var lastError: UpstreamError?

        init(
            query: ParsedDNSMessage,
            deadline: NIODeadline,
            eventLoop: any EventLoop,
            completion: @escaping @Sendable (Result<ParsedDNSMessage, UpstreamError>) -> Void
        ) {
            self.query = query
            self.deadline = deadline
            self.eventLoop = eventLoop
            self.completion = completion
        }
    }

    /// The member an attempt goes to, with what the attempt needs of the pool at that moment.
    private struct Choice {
        let id: Int
        let transport: any UpstreamTransport
        let metrics: UpstreamMetrics
        let deadline: NIODeadline
        let failoverMask: UInt16
    }

    private func attempt(_ attempt: Attempt) {
        let loop = attempt.eventLoop
        let now = loop.now
        let outcome: Result<Choice, UpstreamError> =
            now < attempt.deadline
            ? choose(for: attempt, now: now)
            : .failure(UpstreamError(.timeout, upstream: name, detail: "the query's deadline passed"))
        guard case .success(let choice) = outcome else {
            if let reply = attempt.lastReply {
                attempt.completion(.success(reply))
            } else if case .failure(let error) = outcome {
                attempt.completion(.failure(attempt.lastError ?? error))
            }
            return
        }
        choice.transport.send(attempt.query, deadline: choice.deadline, on: attempt.eventLoop) { result in
            switch result {
            case .success(let reply):
                choice.metrics.duration.recordNanoseconds((loop.now - now).nanoseconds)
                guard choice.failoverMask & 1 << (reply.view.flags & 0x0F) != 0 else {
                    self.finish(choice.id, outcome: .reply, latency: loop.now - now)
                    attempt.completion(.success(reply))
                    return
                }
                self.finish(choice.id, outcome: .failoverResponse, latency: loop.now - now)
                attempt.lastReply = reply
            case .failure(let error):
                guard error.code != .shutdown, error.code != .malformedQuery else {
                    self.finish(choice.id, outcome: .abandoned, latency: nil)
                    attempt.completion(.failure(error))
                    return
                }
                self.finish(choice.id, outcome: .failure(error), latency: nil)
                attempt.lastError = error
            }
            self.attempt(attempt)
        }
    }

    /// Picks an upstream the attempt has not tried and counts the query against it (and a failover
    /// against the upstream it tried last); the attempt's deadline share, or why there is none.
    private func choose(for attempt: Attempt, now: NIODeadline) -> Result<Choice, UpstreamError> {
        state.withLockedValue { state -> Result<Choice, UpstreamError> in
            if attempt.generation != state.generation {
                // The members changed since the last try: positions mean others now.
                if attempt.generation != nil { attempt.tried = 0 }
                attempt.previous = nil
                attempt.generation = state.generation
            }
            state.candidates.removeAll(keepingCapacity: true)
            for index in state.slots.indices
            where state.slots[index].health.isUp && attempt.tried & (1 << UInt64(index)) == 0 {
                state.candidates.append(
                    UpstreamCandidate(
                        index: index,
                        outstanding: state.slots[index].outstanding,
                        latency: state.slots[index].latencyNanoseconds.map { .nanoseconds(Int64($0)) }
                    )
                )
            }
            let index: Int
            var deadline = attempt.deadline
            if state.candidates.isEmpty {
                guard let recovery = recoveryChoice(tried: attempt.tried, now: now, in: &state) else {
                    return .failure(
                        UpstreamError(
                            .noUpstreamAvailable,
                            upstream: name,
                            detail: "all \(state.slots.count) upstreams are down"
                        )
                    )
                }
                index = recovery
            } else {
                let position = state.policy.select(from: state.candidates)
                index = state.candidates[min(max(position, 0), state.candidates.count - 1)].index
                countQuery(to: index, in: &state)
                if let previous = attempt.previous { state.slots[previous].metrics.failovers.increment() }
                // Each remaining upstream gets an equal share of the time left; the last one gets it all.
                if state.candidates.count > 1 {
                    deadline = now + .nanoseconds((attempt.deadline - now).nanoseconds / Int64(state.candidates.count))
                }
            }
            attempt.tried |= 1 << UInt64(index)
            attempt.previous = index
            // Field by field: a copy of the slot would retain its failure log too.
            if let timeout = state.slots[index].member.timeout { deadline = min(deadline, now + timeout) }
            return .success(
                Choice(
                    id: state.slots[index].id,
                    transport: state.slots[index].member.transport,
                    metrics: state.slots[index].metrics,
                    deadline: deadline,
                    failoverMask: state.settings.failoverMask
                )
            )
        }
    }

    /// While every member is down, lets one query per ``Configuration/recoveryQueryInterval`` through
    /// to the member heard failing least recently, and counts it against that member; `nil` for the
    /// others, and when some member is up or this query already tried one.
    private func recoveryChoice(tried: UInt64, now: NIODeadline, in state: inout State) -> Int? {
        guard tried == 0, let interval = state.settings.configuration.recoveryQueryInterval,
            now >= state.nextRecoveryQuery, !state.slots.contains(where: \.health.isUp)
        else { return nil }
        let index = state.slots.indices.min {
            state.slots[$0].health.lastFailure ?? now < state.slots[$1].health.lastFailure ?? now
        }!
        state.nextRecoveryQuery = now + interval
        countQuery(to: index, in: &state)
        state.slots[index].metrics.recoveryQueries.increment()
        return index
    }

    /// Counts a client query sent to member `index`: outstanding, and in its metrics.
    private func countQuery(to index: Int, in state: inout State) {
        state.slots[index].outstanding += 1
        state.slots[index].metrics.queries.increment()
    }

    private enum Outcome {
        case reply
        case failoverResponse
        case failure(UpstreamError)
        case abandoned
    }

    /// Updates the health and metrics of member `id` after an attempt; nothing when it has left.
    private func finish(_ id: Int, outcome: Outcome, latency: TimeAmount?) {
        let now = healthEventLoop.now
        let event: HealthEvent? = state.withLockedValue { state in
            guard let index = state.index(of: id) else { return nil }
            state.slots[index].outstanding -= 1
            if let latency {
                let sample = Double(latency.nanoseconds)
                state.slots[index].latencyNanoseconds =
                    state.slots[index].latencyNanoseconds.map { $0 * 0.8 + sample * 0.2 } ?? sample
            }
            switch outcome {
            case .reply:
                return state.slots[index].health.recordSuccess() ? .up(state.slots[index]) : nil
            case .failoverResponse:
                state.slots[index].metrics.recordError("failover_rcode")
                return state.slots[index].health.recordSuccess() ? .up(state.slots[index]) : nil
            case .failure(let error):
                state.slots[index].metrics.recordError(error.code.metricLabel)
                // Overload and a lack of local sockets are ours, not the upstream's fault.
                guard error.code != .overloaded, error.code != .localResourcesExhausted else { return nil }
                let logged = shouldLog(error, from: index, now: now, in: &state)
                let event = markFailure(index, reason: "\(error.code): \(error.detail)", now: now, in: &state)
                return event ?? logged.map { .failure(state.slots[index], error, unlogged: $0) }
            case .abandoned:
                return nil
            }
        }
        report(event)
    }

    // MARK: Health

    private enum HealthEvent {
        case down(Slot, reason: String, failures: Int)
        case up(Slot)
        /// A failure worth logging, and how many of its kind went unlogged before it.
        case failure(Slot, UpstreamError, unlogged: Int)
    }

    /// Whether `error` from member `index` is logged now: the first of its kind, or the first after
    /// ``failureLogInterval``. Returns how many of its kind went unlogged before it, or `nil` to stay
    /// quiet.
    private func shouldLog(_ error: UpstreamError, from index: Int, now: NIODeadline, in state: inout State) -> Int? {
        if let last = state.slots[index].failureLog[error.code], now < last.logged + Self.failureLogInterval {
            state.slots[index].failureLog[error.code]!.unlogged += 1
            return nil
        }
        let unlogged = state.slots[index].failureLog[error.code]?.unlogged ?? 0
        state.slots[index].failureLog[error.code] = (now, 0)
        return unlogged
    }

    /// Records a failure against member `index`; when that marks it down, schedules its first probe.
    private func markFailure(_ index: Int, reason: String, now: NIODeadline, in state: inout State) -> HealthEvent? {
        let configuration = state.settings.configuration
        guard
            state.slots[index].health.recordFailure(
                reason: reason,
                now: now,
                maximumFailures: configuration.maximumFailures,
                initialProbeDelay: configuration.initialProbeDelay
            )
        else { return nil }
        state.slots[index].metrics.downTransitions.increment()
        schedule(probeOf: index, at: state.slots[index].health.nextProbe!, in: &state)
        if !state.slots.contains(where: \.health.isUp) {
            // The last one went down: probe every member soon, whatever its back-off had reached.
            for other in state.slots.indices {
                if let due = state.slots[other].health.expediteProbe(now: now, delay: configuration.initialProbeDelay) {
                    schedule(probeOf: other, at: due, in: &state)
                }
            }
        }
        return .down(state.slots[index], reason: reason, failures: state.slots[index].health.consecutiveFailures)
    }

    private func schedule(probeOf index: Int, at due: NIODeadline, in state: inout State) {
        guard !state.isShutDown else { return }
        let id = state.slots[index].id
        state.slots[index].scheduled?.cancel()
        state.slots[index].scheduled = healthEventLoop.scheduleTask(deadline: due) { [weak self] in
            self?.probe(id, active: false)
        }
    }

    /// Sends the probe query to member `id`. A passive probe (of a down upstream) brings it back or
    /// backs off (not while every member is down); an active check counts as an ordinary success or
    /// failure. Any reply is a success, whatever its response code.
    private func probe(_ id: Int, active: Bool) {
        let loop = healthEventLoop
        let target = state.withLockedValue { state -> (any UpstreamTransport, ParsedDNSMessage, TimeAmount)? in
            guard !state.isShutDown, let index = state.index(of: id), active == state.slots[index].health.isUp,
                let probeQuery = state.settings.probeQuery
            else { return nil }
            state.slots[index].metrics.probes.increment()
            return (state.slots[index].member.transport, probeQuery, state.settings.configuration.probeTimeout)
        }
        guard let (transport, probeQuery, timeout) = target else { return }
        transport.send(probeQuery, deadline: loop.now + timeout, on: loop).whenComplete { result in
            var reason: String?
            if case .failure(let error) = result { reason = "probe failed: \(error)" }
            let now = loop.now
            let event: HealthEvent? = self.state.withLockedValue { state in
                guard let index = state.index(of: id) else { return nil }
                guard let reason else {
                    return state.slots[index].health.recordSuccess() ? .up(state.slots[index]) : nil
                }
                if active || state.slots[index].health.isUp {
                    return self.markFailure(index, reason: reason, now: now, in: &state)
                }
                let allDown = !state.slots.contains(where: \.health.isUp)
                let configuration = state.settings.configuration
                let due = state.slots[index].health.recordProbeFailure(
                    reason: reason,
                    now: now,
                    maximumProbeDelay: allDown ? configuration.initialProbeDelay : configuration.maximumProbeDelay
                )
                self.schedule(probeOf: index, at: due, in: &state)
                return nil
            }
            self.report(event)
        }
    }

    /// Runs an active check of every upstream that is up (down ones are already being probed).
    private func checkAll() {
        for id in state.withLockedValue({ $0.slots.map(\.id) }) { probe(id, active: true) }
    }

    private func report(_ event: HealthEvent?) {
        switch event {
        case .down(let slot, let reason, let failures):
            slot.metrics.up.record(0)
            logger.warning(
                "upstream down",
                metadata: [
                    "upstream": "\(slot.member.name)", "reason": "\(reason)",
                    "consecutive_failures": .stringConvertible(failures),
                ]
            )
        case .up(let slot):
            slot.metrics.up.record(1)
            logger.notice("upstream up", metadata: ["upstream": "\(slot.member.name)"])
        case .failure(let slot, let error, let unlogged):
            logger.warning(
                "upstream query failed",
                metadata: [
                    "upstream": "\(slot.member.name)", "kind": "\(error.code)", "detail": "\(error.detail)",
                    "unlogged_since_last": .stringConvertible(unlogged),
                ]
            )
        case nil:
            break
        }
    }

    // MARK: Introspection and shutdown

    /// Whether at least one upstream is up.
    public var hasUsableUpstream: Bool {
        state.withLockedValue { $0.slots.contains { $0.health.isUp } }
    }

    /// Each member's state, in configured order; what happened to it is counted in the metrics
    /// (``DNSProxyMetrics/Name``: queries, errors by kind, failovers, probes, down transitions).
    public func status() -> [UpstreamMemberStatus] {
        state.withLockedValue { state in
            state.slots.map { slot in
                UpstreamMemberStatus(
                    name: slot.member.name,
                    isUp: slot.health.isUp,
                    downReason: slot.health.downReason,
                    outstanding: slot.outstanding,
                    latency: slot.latencyNanoseconds.map { .nanoseconds(Int64($0)) }
                )
            }
        }
    }

    /// Stops probes and active checks, and leaves the members' connections open; ``shutdown()``
    /// calls it, then closes them.
    public func stopHealthChecks() {
        state.withLockedValue { state in
            state.isShutDown = true
            state.activeCheck?.cancel()
            for slot in state.slots { slot.scheduled?.cancel() }
        }
    }
}
