import DoTCore
import Logging
import NIOCore
import NIOPosix

/// A lookup waiting for its reply or its deadline; on its slot's loop.
final class PendingLookup: @unchecked Sendable {
    /// When it times out: a provisional one when written, the real one (from the flush) soon after.
    var deadline: NIODeadline
    let completion: RedisConnectionHandler.Completion
    /// Whether the reply or the deadline has answered it.
    var done = false

    init(deadline: NIODeadline, completion: @escaping RedisConnectionHandler.Completion) {
        self.deadline = deadline
        self.completion = completion
    }
}

/// One event loop's connection, its reconnect back-off and its breaker. Confined to its loop: every
/// method runs there.
final class RedisConnectionSlot: @unchecked Sendable {
    private enum State {
        case idle
        case connecting
        case connected(any Channel)
        case waiting
    }

    let loop: any EventLoop
    private let configuration: RedisClient.Configuration
    private let tlsContext: TLSClientContext?
    private let metrics: RedisCacheMetrics
    private let logger: Logger
    private var state = State.idle
    private var reconnectBackoff: TimeAmount
    private var breaker: RedisCircuitBreaker
    private var inFlight = 0
    private var stopped = false
    /// Whether the last attempt failed, so that a Redis that stays down is logged once.
    private var failing = false
    /// The breaker's clock (the real one but in tests); lookups' deadlines are the loop's timers.
    private let clock: @Sendable () -> NIODeadline
    /// Who waits for the next connection attempt's outcome (``nextConnection()``).
    private var attemptWaiters: [EventLoopPromise<Void>] = []

    init(
        loop: any EventLoop,
        configuration: RedisClient.Configuration,
        tlsContext: TLSClientContext?,
        metrics: RedisCacheMetrics,
        logger: Logger,
        clock: @escaping @Sendable () -> NIODeadline
    ) {
        self.loop = loop
        self.clock = clock
        self.configuration = configuration
        self.tlsContext = tlsContext
        self.metrics = metrics
        self.logger = logger
        self.reconnectBackoff = configuration.minimumReconnectBackoff
        self.breaker = RedisCircuitBreaker(
            threshold: configuration.failureThreshold,
            span: configuration.failureSpan,
            minimumBackoff: configuration.minimumBreakerBackoff,
            maximumBackoff: configuration.maximumBreakerBackoff
        )
    }

    func send(
        _ bytes: ByteBuffer,
        replyCount: Int,
        purpose: RedisClient.Purpose,
        completion: @escaping RedisConnectionHandler.Completion
    ) {
        loop.preconditionInEventLoop()
        guard !stopped else { return completion(.failure(RedisError(.shutdown))) }
        guard case .connected(let channel) = state else {
            if case .idle = state { connect() }
            return completion(.failure(RedisError(.notConnected)))
        }
        guard inFlight < configuration.maximumInFlight else { return completion(.failure(RedisError(.overloaded))) }
        if purpose == .lookup, !breaker.admit(now: clock()) { return completion(.failure(RedisError(.breakerOpen))) }
        // Stores wait for the breaker too: a Redis that does not answer lookups would otherwise
        // collect up to maximumInFlight of them, held in memory until it answers or the connection drops.
        if purpose == .store, breaker.isOpen { return completion(.failure(RedisError(.breakerOpen))) }
        inFlight += 1
        let replied: RedisConnectionHandler.Completion
        if purpose == .lookup {
            // The deadline: whichever of the reply and the sweep comes first answers; a late reply is
            // dropped (its request stays counted until it arrives or the connection closes).
            let pending = PendingLookup(deadline: .now() + configuration.timeout, completion: completion)
            while deadlines.first?.done == true { deadlines.removeFirst() }
            deadlines.append(pending)
            awaitingFlush.append(pending)
            armDeadlineSweep()
            replied = { result in
                self.inFlight -= 1
                guard !pending.done else { return }
                pending.done = true
                let checked = Self.checked(result)
                if case .failure = checked { self.recordLookup(failed: true) } else { self.recordLookup(failed: false) }
                completion(checked)
            }
        } else {
            replied = { result in
                self.inFlight -= 1
                completion(Self.checked(result))
            }
        }
        channel.write(
            RedisConnectionHandler.Request(bytes: bytes, replyCount: replyCount, completion: replied),
            promise: nil
        )
        // One flush (one system call) for every request written in this turn of the loop: the lookups
        // of a batch of queries read together leave together.
        guard !flushScheduled else { return }
        flushScheduled = true
        loop.execute {
            self.flushScheduled = false
            channel.flush()
            // A lookup's time starts when it leaves: the rest of the loop's turn (a batch of queries
            // read together) is the proxy's own time, not Redis's, and must not open the breaker.
            let deadline = NIODeadline.now() + self.configuration.timeout
            for pending in self.awaitingFlush { pending.deadline = deadline }
            self.awaitingFlush.removeAll(keepingCapacity: true)
        }
    }

    /// An error reply fails the request.
    private static func checked(_ result: Result<[RESPValue], RedisError>) -> Result<[RESPValue], RedisError> {
        guard case .success(let replies) = result else { return result }
        for case .error(let message) in replies { return .failure(RedisError(.serverError, message)) }
        return result
    }

    /// Lookups waiting for a reply, in the order of their deadlines (all have the same timeout).
    private var deadlines = CircularBuffer<PendingLookup>()
    private var deadlineSweep: Scheduled<Void>?
    /// Lookups written in this turn of the loop, whose deadline starts at the flush.
    private var awaitingFlush: [PendingLookup] = []
    private var flushScheduled = false

    /// One timer for every waiting lookup: at the first deadline, fails those whose time is up.
    private func armDeadlineSweep() {
        guard deadlineSweep == nil, let first = deadlines.first else { return }
        deadlineSweep = loop.scheduleTask(deadline: first.deadline) {
            self.deadlineSweep = nil
            let now = NIODeadline.now()
            while let head = self.deadlines.first, head.done || head.deadline <= now {
                self.deadlines.removeFirst()
                guard !head.done else { continue }
                head.done = true
                self.recordLookup(failed: true)
                head.completion(.failure(RedisError(.timeout)))
            }
            self.armDeadlineSweep()
        }
    }

    private func recordLookup(failed: Bool) {
        if failed {
            if breaker.recordFailure(now: clock()) {
                metrics.breakerOpen.increment()
                logger.warning(
                    "redis breaker open: skipping the second cache tier",
                    metadata: ["after_failures": "\(configuration.failureThreshold)"]
                )
            }
        } else if breaker.recordSuccess() {
            metrics.breakerOpen.decrement()
            logger.info("redis breaker closed: the second cache tier is used again")
        }
    }

    func connect() {
        loop.preconditionInEventLoop()
        guard !stopped, case .idle = state else { return }
        state = .connecting
        let endpoint = configuration.endpoint
        let tlsContext = self.tlsContext
        let loop = self.loop
        // The name is resolved off the event loop: getaddrinfo blocks.
        NIOThreadPool.singleton.runIfActive(eventLoop: loop) {
            try SocketAddress.makeAddressResolvingHost(endpoint.host, port: endpoint.port)
        }.flatMap { address in
            ClientBootstrap(group: loop)
                .connectTimeout(self.configuration.connectTimeout)
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .channelInitializer { channel in
                    do {
                        if let tlsContext {
                            try channel.pipeline.syncOperations.addHandler(
                                GnuTLSHandler(client: tlsContext, serverName: endpoint.host, resumptionData: nil)
                            )
                        }
                        try channel.pipeline.syncOperations.addHandler(RedisConnectionHandler())
                        return channel.eventLoop.makeSucceededVoidFuture()
                    } catch {
                        return channel.eventLoop.makeFailedFuture(error)
                    }
                }
                .connect(to: address)
        }.flatMap { channel in
            self.logIn(channel).map { channel }
        }.whenComplete { result in
            switch result {
            case .success(let channel): self.connected(channel)
            case .failure(let error): self.connectFailed(error)
            }
        }
    }

    /// `AUTH` and `SELECT` when the URL asks for them, within the connect timeout.
    private func logIn(_ channel: any Channel) -> EventLoopFuture<Void> {
        let endpoint = configuration.endpoint
        var commands: [[[UInt8]]] = []
        if let password = endpoint.password {
            commands.append(
                [Array("AUTH".utf8)] + (endpoint.username.map { [Array($0.utf8)] } ?? []) + [Array(password.utf8)]
            )
        }
        if endpoint.database != 0 { commands.append([Array("SELECT".utf8), Array(String(endpoint.database).utf8)]) }
        commands.append([Array("PING".utf8)])
        var bytes = ByteBuffer()
        for command in commands { RESPReader.format(command, into: &bytes) }
        let replied = loop.makePromise(of: [RESPValue].self)
        channel.writeAndFlush(
            RedisConnectionHandler.Request(bytes: bytes, replyCount: commands.count) {
                replied.completeWith($0.mapError { $0 })
            },
            promise: nil
        )
        let timer = loop.scheduleTask(in: configuration.connectTimeout) {
            replied.fail(RedisError(.timeout, "no answer to AUTH/SELECT/PING"))
        }
        return replied.futureResult.flatMapThrowing { replies in
            timer.cancel()
            for case .error(let message) in replies {
                // The message is Redis's (`WRONGPASS …`), never the password.
                throw RedisError(.serverError, message)
            }
        }.flatMapErrorThrowing { error in
            channel.close(promise: nil)
            throw error
        }
    }

    /// Succeeds as soon as the connection is up, at once if it is; fails with the error of the next
    /// attempt that fails (one is started if none is under way or scheduled).
    func nextConnection() -> EventLoopFuture<Void> {
        loop.preconditionInEventLoop()
        if case .connected = state { return loop.makeSucceededVoidFuture() }
        guard !stopped else { return loop.makeFailedFuture(RedisError(.shutdown)) }
        let promise = loop.makePromise(of: Void.self)
        attemptWaiters.append(promise)
        if case .idle = state { connect() }
        return promise.futureResult
    }

    private func connected(_ channel: any Channel) {
        guard !stopped else {
            channel.close(promise: nil)
            return
        }
        defer {
            for waiter in attemptWaiters { waiter.succeed() }
            attemptWaiters.removeAll()
        }
        state = .connected(channel)
        let connectedAt = NIODeadline.now()
        metrics.connects.increment()
        metrics.connections.increment()
        if failing, let unlogged = logThrottle.admit("connected", now: connectedAt) {
            logger.info(
                "redis connected again",
                metadata: ["redis": "\(configuration.endpoint)", "unlogged_since_last": "\(unlogged)"]
            )
        }
        failing = false
        channel.closeFuture.whenComplete { _ in
            self.metrics.connections.decrement()
            guard case .connected(let current) = self.state, current === channel else { return }
            self.state = .idle
            guard !self.stopped else { return }
            // The back-off starts over only after a connection that lasted: one that Redis (or
            // something posing as it) breaks right after the handshake keeps doubling it.
            let now = NIODeadline.now()
            if now - connectedAt >= Self.healthyConnection {
                self.reconnectBackoff = self.configuration.minimumReconnectBackoff
            }
            if let unlogged = self.logThrottle.admit("closed", now: now) {
                self.logger.warning(
                    "redis connection closed",
                    metadata: ["redis": "\(self.configuration.endpoint)", "unlogged_since_last": "\(unlogged)"]
                )
            }
            self.failing = true
            self.scheduleReconnect()
        }
    }

    /// How long a connection must last for the reconnect back-off to start over.
    static let healthyConnection = TimeAmount.seconds(10)
    private let logThrottle = LogThrottle()

    private func connectFailed(_ error: any Error) {
        metrics.connectFailures.increment()
        state = .idle
        for waiter in attemptWaiters { waiter.fail(error) }
        attemptWaiters.removeAll()
        guard !stopped else { return }
        if !failing {
            logger.warning(
                "redis unreachable; the second cache tier is skipped until it answers",
                metadata: ["redis": "\(configuration.endpoint)", "error": "\(error)"]
            )
            failing = true
        }
        scheduleReconnect()
    }

    private func scheduleReconnect() {
        state = .waiting
        let delay = reconnectBackoff
        reconnectBackoff = min(reconnectBackoff * 2, configuration.maximumReconnectBackoff)
        loop.scheduleTask(in: delay) {
            guard case .waiting = self.state else { return }
            self.state = .idle
            self.connect()
        }
    }

    func stop() -> EventLoopFuture<Void> {
        stopped = true
        guard case .connected(let channel) = state else { return loop.makeSucceededVoidFuture() }
        state = .idle
        return channel.close().recover { _ in }
    }
}
