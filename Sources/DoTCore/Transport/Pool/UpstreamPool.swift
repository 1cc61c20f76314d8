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
/// The pool is a `Service`: run it in the same `ServiceGroup` as the ``DNSProxyServer`` that uses it,
/// listed before the server, so that on shutdown the server drains first. ``run()`` starts the
/// members (host-name members start resolving) and the active checks; on graceful shutdown it stops
/// the probes and closes every member's connections. A pool that is not run still forwards, fails
/// over and probes members that went down, but makes no active checks.
public final class UpstreamPool: UpstreamTransport, Service {
    /// One upstream in the pool.
    public struct Member: Sendable {
        /// The name used in logs and statistics, such as `9.9.9.9:853#dns.quad9.net`.
        public var name: String
        /// Where its queries go.
        public var transport: any UpstreamTransport

        /// Creates a member.
        ///
        /// - Parameters:
        ///   - name: Its name in logs and statistics.
        ///   - transport: Its transport.
        public init(name: String, transport: any UpstreamTransport) {
            self.name = name
            self.transport = transport
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
    public let members: [Member]
    /// The configuration in effect.
    public let configuration: Configuration
    private let healthEventLoop: any EventLoop
    private let logger: Logger
    private let probeQuery: ParsedDNSMessage?
    /// `failoverResponseCodes` as a bit per header RCODE (0-15), so a reply is checked without hashing.
    private let failoverMask: UInt16
    /// Each member's metric handles, in member order.
    private let memberMetrics: [UpstreamMetrics]
    private let state: NIOLockedValueBox<State>

    private struct State {
        var policy: any UpstreamSelectionPolicy
        var health: [UpstreamHealth]
        var statistics: [UpstreamMemberStatistics]
        var latencyNanoseconds: [Double?]
        var candidates: [UpstreamCandidate] = []
        var scheduled: [Scheduled<Void>?]
        var activeCheck: RepeatedTask?
        /// Whether ``start()`` ran.
        var started = false
        var isShutDown = false
        /// While every member is down, the next client query may go out from this time on.
        var nextRecoveryQuery = NIODeadline.uptimeNanoseconds(0)
        /// Per member, by error code: when a failure was last logged, and how many since were not.
        var failureLog: [[UpstreamError.Code: (logged: NIODeadline, unlogged: Int)]]
    }

    /// Creates a pool. Nothing connects until the first query; active checks, if configured, start now.
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
        self.members = members
        self.configuration = configuration
        self.healthEventLoop = healthEventLoop
        self.logger = logger
        self.memberMetrics = members.map { metrics.upstream($0.name) }
        for handles in memberMetrics { handles.up.record(1) }
        self.failoverMask = configuration.failoverResponseCodes.reduce(0) { mask, code in
            code.rawValue < 16 ? mask | 1 << code.rawValue : mask
        }
        self.probeQuery = try? ParsedDNSMessage(
            DNSMessage.query(name: configuration.probeName, type: configuration.probeType, id: 0).encoded()
        )
        self.state = NIOLockedValueBox(
            State(
                policy: configuration.policy,
                health: Array(repeating: UpstreamHealth(), count: members.count),
                statistics: members.map { UpstreamMemberStatistics(name: $0.name) },
                latencyNanoseconds: Array(repeating: nil, count: members.count),
                scheduled: Array(repeating: nil, count: members.count),
                failureLog: Array(repeating: [:], count: members.count)
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
        let first = state.withLockedValue { state in
            defer { state.started = true }
            return !state.started && !state.isShutDown
        }
        guard first else { return }
        for member in members { member.transport.start(on: healthEventLoop) }
        if let interval = configuration.healthCheckInterval {
            let task = healthEventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { [weak self] _ in
                self?.checkAll()
            }
            state.withLockedValue { state in
                if state.isShutDown { task.cancel() } else { state.activeCheck = task }
            }
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
        var tried: UInt64 = 0
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

    private func attempt(_ attempt: Attempt) {
        let loop = attempt.eventLoop
        let now = loop.now
        let choice: (index: Int, deadline: NIODeadline)? =
            now < attempt.deadline
            ? choose(excluding: attempt.tried, after: attempt.previous, now: now, deadline: attempt.deadline) : nil
        guard let choice else {
            if let reply = attempt.lastReply {
                attempt.completion(.success(reply))
            } else {
                attempt.completion(
                    .failure(
                        attempt.lastError
                            ?? UpstreamError(
                                .noUpstreamAvailable,
                                upstream: name,
                                detail: "all \(members.count) upstreams are down"
                            )
                    )
                )
            }
            return
        }
        attempt.tried |= 1 << UInt64(choice.index)
        attempt.previous = choice.index
        members[choice.index].transport.send(attempt.query, deadline: choice.deadline, on: attempt.eventLoop) {
            result in
            switch result {
            case .success(let reply):
                self.memberMetrics[choice.index].duration.recordNanoseconds((loop.now - now).nanoseconds)
                guard self.isFailoverResponse(reply) else {
                    self.finish(choice.index, outcome: .reply, latency: loop.now - now)
                    attempt.completion(.success(reply))
                    return
                }
                self.finish(choice.index, outcome: .failoverResponse, latency: loop.now - now)
                attempt.lastReply = reply
            case .failure(let error):
                guard error.code != .shutdown, error.code != .malformedQuery else {
                    self.finish(choice.index, outcome: .abandoned, latency: nil)
                    attempt.completion(.failure(error))
                    return
                }
                self.finish(choice.index, outcome: .failure(error), latency: nil)
                attempt.lastError = error
            }
            self.attempt(attempt)
        }
    }

    /// Whether `reply`'s response code is one that fails over.
    private func isFailoverResponse(_ reply: ParsedDNSMessage) -> Bool {
        failoverMask & 1 << (reply.view.flags & 0x0F) != 0
    }

    /// Picks an upstream not in `tried` and counts the query against it (and a failover against
    /// `previous`, the upstream that just failed); returns it with the attempt's deadline, or `nil`
    /// when none is usable.
    private func choose(
        excluding tried: UInt64,
        after previous: Int?,
        now: NIODeadline,
        deadline: NIODeadline
    ) -> (index: Int, deadline: NIODeadline)? {
        state.withLockedValue { state -> (index: Int, deadline: NIODeadline)? in
            state.candidates.removeAll(keepingCapacity: true)
            for index in members.indices where state.health[index].isUp && tried & (1 << UInt64(index)) == 0 {
                state.candidates.append(
                    UpstreamCandidate(
                        index: index,
                        outstanding: state.statistics[index].outstanding,
                        latency: state.latencyNanoseconds[index].map { .nanoseconds(Int64($0)) }
                    )
                )
            }
            guard !state.candidates.isEmpty else {
                return recoveryChoice(tried: tried, now: now, deadline: deadline, in: &state)
            }
            let position = state.policy.select(from: state.candidates)
            let index = state.candidates[min(max(position, 0), state.candidates.count - 1)].index
            countQuery(to: index, in: &state)
            if let previous { state.statistics[previous].failovers += 1 }
            // Each remaining upstream gets an equal share of the time left; the last one gets it all.
            let share =
                state.candidates.count > 1
                ? now + .nanoseconds((deadline - now).nanoseconds / Int64(state.candidates.count)) : deadline
            return (index, share)
        }
    }

    /// While every member is down, lets one query per ``Configuration/recoveryQueryInterval`` through
    /// to the member heard failing least recently, and counts it against that member; `nil` for the
    /// others, and when some member is up or this query already tried one.
    private func recoveryChoice(
        tried: UInt64,
        now: NIODeadline,
        deadline: NIODeadline,
        in state: inout State
    ) -> (index: Int, deadline: NIODeadline)? {
        guard tried == 0, let interval = configuration.recoveryQueryInterval, now >= state.nextRecoveryQuery,
            !state.health.contains(where: \.isUp)
        else { return nil }
        let index = members.indices.min { state.health[$0].lastFailure ?? now < state.health[$1].lastFailure ?? now }!
        state.nextRecoveryQuery = now + interval
        countQuery(to: index, in: &state)
        state.statistics[index].recoveryQueries += 1
        return (index, deadline)
    }

    /// Counts a client query sent to member `index` as outstanding, in its statistics and metrics.
    private func countQuery(to index: Int, in state: inout State) {
        state.statistics[index].outstanding += 1
        state.statistics[index].queries += 1
        memberMetrics[index].queries.increment()
    }

    private enum Outcome {
        case reply
        case failoverResponse
        case failure(UpstreamError)
        case abandoned
    }

    /// Updates the statistics and health of member `index` after an attempt.
    private func finish(_ index: Int, outcome: Outcome, latency: TimeAmount?) {
        let now = healthEventLoop.now
        let event: HealthEvent? = state.withLockedValue { state in
            state.statistics[index].outstanding -= 1
            if let latency {
                let sample = Double(latency.nanoseconds)
                state.latencyNanoseconds[index] =
                    state.latencyNanoseconds[index].map { $0 * 0.8 + sample * 0.2 } ?? sample
            }
            switch outcome {
            case .reply:
                state.statistics[index].replies += 1
                return state.health[index].recordSuccess() ? .up(index) : nil
            case .failoverResponse:
                state.statistics[index].failoverResponses += 1
                memberMetrics[index].recordError("failover_rcode")
                return state.health[index].recordSuccess() ? .up(index) : nil
            case .failure(let error):
                memberMetrics[index].recordError(error.code.metricLabel)
                switch error.code {
                case .timeout: state.statistics[index].timeouts += 1
                case .overloaded, .malformedReply, .localResourcesExhausted: state.statistics[index].otherFailures += 1
                default: state.statistics[index].connectionFailures += 1
                }
                // Overload and a lack of local sockets are ours, not the upstream's fault.
                guard error.code != .overloaded, error.code != .localResourcesExhausted else { return nil }
                let logged = shouldLog(error, from: index, now: now, in: &state)
                let event = markFailure(index, reason: "\(error.code): \(error.detail)", now: now, in: &state)
                return event ?? logged.map { .failure(index, error, unlogged: $0) }
            case .abandoned:
                return nil
            }
        }
        report(event)
    }

    // MARK: Health

    private enum HealthEvent {
        case down(Int, reason: String, failures: Int)
        case up(Int)
        /// A failure worth logging, and how many of its kind went unlogged before it.
        case failure(Int, UpstreamError, unlogged: Int)
    }

    /// Whether `error` from member `index` is logged now: the first of its kind, or the first after
    /// ``failureLogInterval``. Returns how many of its kind went unlogged before it, or `nil` to stay
    /// quiet.
    private func shouldLog(_ error: UpstreamError, from index: Int, now: NIODeadline, in state: inout State) -> Int? {
        if let last = state.failureLog[index][error.code], now < last.logged + Self.failureLogInterval {
            state.failureLog[index][error.code]!.unlogged += 1
            return nil
        }
        let unlogged = state.failureLog[index][error.code]?.unlogged ?? 0
        state.failureLog[index][error.code] = (now, 0)
        return unlogged
    }

    /// Records a failure against member `index`; when that marks it down, schedules its first probe.
    private func markFailure(_ index: Int, reason: String, now: NIODeadline, in state: inout State) -> HealthEvent? {
        guard
            state.health[index].recordFailure(
                reason: reason,
                now: now,
                maximumFailures: configuration.maximumFailures,
                initialProbeDelay: configuration.initialProbeDelay
            )
        else { return nil }
        state.statistics[index].downTransitions += 1
        schedule(probeOf: index, at: state.health[index].nextProbe!, in: &state)
        if !state.health.contains(where: \.isUp) {
            // The last one went down: probe every member soon, whatever its back-off had reached.
            for other in members.indices {
                if let due = state.health[other].expediteProbe(now: now, delay: configuration.initialProbeDelay) {
                    schedule(probeOf: other, at: due, in: &state)
                }
            }
        }
        return .down(index, reason: reason, failures: state.health[index].consecutiveFailures)
    }

    private func schedule(probeOf index: Int, at due: NIODeadline, in state: inout State) {
        guard !state.isShutDown else { return }
        state.scheduled[index]?.cancel()
        state.scheduled[index] = healthEventLoop.scheduleTask(deadline: due) { [weak self] in
            self?.probe(index, active: false)
        }
    }

    /// Sends the probe query to member `index`. A passive probe (of a down upstream) brings it back
    /// or backs off (not while every member is down); an active check counts as an ordinary success
    /// or failure. Any reply is a success, whatever its response code.
    private func probe(_ index: Int, active: Bool) {
        let proceed = state.withLockedValue { state in
            guard !state.isShutDown, active == state.health[index].isUp else { return false }
            state.statistics[index].probes += 1
            return true
        }
        guard proceed, let probeQuery else { return }
        let loop = healthEventLoop
        members[index].transport.send(probeQuery, deadline: loop.now + configuration.probeTimeout, on: loop)
            .whenComplete { result in
                var reason: String?
                if case .failure(let error) = result { reason = "probe failed: \(error)" }
                let now = loop.now
                let event: HealthEvent? = self.state.withLockedValue { state in
                    guard let reason else { return state.health[index].recordSuccess() ? .up(index) : nil }
                    if active || state.health[index].isUp {
                        return self.markFailure(index, reason: reason, now: now, in: &state)
                    }
                    let allDown = !state.health.contains(where: \.isUp)
                    let due = state.health[index].recordProbeFailure(
                        reason: reason,
                        now: now,
                        maximumProbeDelay: allDown
                            ? self.configuration.initialProbeDelay : self.configuration.maximumProbeDelay
                    )
                    self.schedule(probeOf: index, at: due, in: &state)
                    return nil
                }
                self.report(event)
            }
    }

    /// Runs an active check of every upstream that is up (down ones are already being probed).
    private func checkAll() {
        for index in members.indices { probe(index, active: true) }
    }

    private func report(_ event: HealthEvent?) {
        switch event {
        case .down(let index, let reason, let failures):
            memberMetrics[index].up.record(0)
            logger.warning(
                "upstream down",
                metadata: [
                    "upstream": "\(members[index].name)", "reason": "\(reason)",
                    "consecutive_failures": .stringConvertible(failures),
                ]
            )
        case .up(let index):
            memberMetrics[index].up.record(1)
            logger.notice("upstream up", metadata: ["upstream": "\(members[index].name)"])
        case .failure(let index, let error, let unlogged):
            logger.warning(
                "upstream query failed",
                metadata: [
                    "upstream": "\(members[index].name)", "kind": "\(error.code)", "detail": "\(error.detail)",
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
        state.withLockedValue { $0.health.contains { $0.isUp } }
    }

    /// Each member's state and counters, in configured order.
    public func statistics() -> [UpstreamMemberStatistics] {
        state.withLockedValue { state in
            members.indices.map { index in
                var statistics = state.statistics[index]
                statistics.isUp = state.health[index].isUp
                statistics.downReason = state.health[index].downReason
                statistics.latency = state.latencyNanoseconds[index].map { .nanoseconds(Int64($0)) }
                return statistics
            }
        }
    }

    /// Stops probes and active checks, and leaves the members' connections open; ``shutdown()``
    /// calls it, then closes them.
    public func stopHealthChecks() {
        state.withLockedValue { state in
            state.isShutDown = true
            state.activeCheck?.cancel()
            state.scheduled.forEach { $0?.cancel() }
        }
    }
}
