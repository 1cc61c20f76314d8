import DoTCore
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle

/// A non-blocking Redis client for the second cache tier: one long-lived, pipelined connection per
/// event loop, so a lookup is written and answered on the loop that asked, with no lock or hop.
///
/// Every lookup has a deadline (``Configuration/timeout``); a timeout or error is the caller's miss,
/// and ``Configuration/failureThreshold`` failures in a row, over at least
/// ``Configuration/failureSpan``, open a breaker that skips Redis for a back-off (1 s, doubling to
/// 30 s), then lets one probe through. A closed connection is reconnected
/// with back-off (100 ms, doubling to 5 s, starting over after a connection that lasted 10 s);
/// meanwhile requests fail at once. Writes never wait for their reply. Waiting requests per
/// connection are bounded (``Configuration/maximumInFlight``), so a stalled Redis holds at most that
/// many.
///
/// A swift-service-lifecycle `Service`: `run()` connects at start and closes the connections on
/// graceful shutdown. It also connects on first use, for embedders that do not run it.
public final class RedisClient: Service, Sendable {
    /// Where Redis is and how patient to be with it.
    public struct Configuration: Hashable, Sendable {
        /// Where Redis is.
        public var endpoint: RedisEndpoint
        /// How long a lookup waits for its reply; 2 ms.
        public var timeout: TimeAmount = .milliseconds(2)
        /// How long a connection attempt (TCP, TLS, `AUTH`, `SELECT`) may take; 1 s.
        public var connectTimeout: TimeAmount = .seconds(1)
        /// Requests waiting for a reply on one connection before more are refused; 1,024.
        public var maximumInFlight: Int = 1024
        /// Failed lookups in a row that open the breaker; 5.
        public var failureThreshold: Int = 5
        /// How long lookups must have been failing, from the first of the failures in a row, before
        /// the breaker opens; 100 ms. One stall of a busy host fails every lookup in flight at once,
        /// and is not Redis down. A paused Redis costs at most this long of lookups that wait out
        /// their deadline.
        public var failureSpan: TimeAmount = .milliseconds(100)
        /// The first and the longest time the breaker stays open; 1 s and 30 s.
        public var breakerBackoff: (minimum: TimeAmount, maximum: TimeAmount) {
            get { (minimumBreakerBackoff, maximumBreakerBackoff) }
            set { (minimumBreakerBackoff, maximumBreakerBackoff) = newValue }
        }
        /// The first and the longest wait before reconnecting; 100 ms and 5 s.
        public var reconnectBackoff: (minimum: TimeAmount, maximum: TimeAmount) {
            get { (minimumReconnectBackoff, maximumReconnectBackoff) }
            set { (minimumReconnectBackoff, maximumReconnectBackoff) = newValue }
        }
        var minimumBreakerBackoff: TimeAmount = .seconds(1)
        var maximumBreakerBackoff: TimeAmount = .seconds(30)
        var minimumReconnectBackoff: TimeAmount = .milliseconds(100)
        var maximumReconnectBackoff: TimeAmount = .seconds(5)

        /// The defaults, for `endpoint`.
        public init(endpoint: RedisEndpoint) { self.endpoint = endpoint }
    }

    /// What a request is for: a lookup has a deadline and feeds the breaker; a store has neither.
    enum Purpose: Sendable { case lookup, store }

    /// The configuration in use.
    public let configuration: Configuration
    private let slots: [ObjectIdentifier: RedisConnectionSlot]
    private let firstSlot: RedisConnectionSlot
    private let logger: Logger

    /// Creates a client; nothing connects until ``run()`` or the first request.
    ///
    /// - Parameters:
    ///   - configuration: Where Redis is, and the deadlines.
    ///   - eventLoopGroup: The loops that will ask; one connection each.
    ///   - tlsContext: Trust roots and TLS settings for `rediss://`; required for it, unused otherwise.
    ///   - metrics: Where connections and breaker changes are counted.
    ///   - logger: Where to log; the password never appears.
    /// - Throws: ``RedisError`` with ``RedisError/Code/invalidURL`` for `rediss://` without a
    ///   `tlsContext`.
    public convenience init(
        configuration: Configuration,
        eventLoopGroup: any EventLoopGroup,
        tlsContext: TLSClientContext? = nil,
        metrics: RedisCacheMetrics = RedisCacheMetrics(),
        logger: Logger = Logger(label: "dotproxy.redis")
    ) throws(RedisError) {
        try self.init(
            configuration: configuration,
            eventLoopGroup: eventLoopGroup,
            tlsContext: tlsContext,
            metrics: metrics,
            logger: logger,
            clock: { .now() }
        )
    }

    /// ``init(configuration:eventLoopGroup:tlsContext:metrics:logger:)`` with the breaker's clock
    /// given, for tests that move time past a back-off instead of waiting for it.
    init(
        configuration: Configuration,
        eventLoopGroup: any EventLoopGroup,
        tlsContext: TLSClientContext?,
        metrics: RedisCacheMetrics,
        logger: Logger,
        clock: @escaping @Sendable () -> NIODeadline
    ) throws(RedisError) {
        guard !configuration.endpoint.usesTLS || tlsContext != nil else {
            throw RedisError(.invalidURL, "rediss:// needs TLS trust roots")
        }
        self.configuration = configuration
        self.logger = logger
        var slots: [ObjectIdentifier: RedisConnectionSlot] = [:]
        var first: RedisConnectionSlot?
        for loop in eventLoopGroup.makeIterator() {
            let slot = RedisConnectionSlot(
                loop: loop,
                configuration: configuration,
                tlsContext: tlsContext,
                metrics: metrics,
                logger: logger,
                clock: clock
            )
            slots[ObjectIdentifier(loop)] = slot
            first = first ?? slot
        }
        guard let first else { preconditionFailure("an EventLoopGroup without event loops") }
        self.slots = slots
        self.firstSlot = first
    }

    /// Sends `commands` (each its name and arguments) as one pipelined request; `completion` gets one
    /// reply per command, on the connection's event loop (`eventLoop`'s own when it is one of the
    /// group's). An error reply is a failure with ``RedisError/Code/serverError``.
    func execute(
        _ commands: [[[UInt8]]],
        purpose: Purpose,
        on eventLoop: any EventLoop,
        completion: @escaping RedisConnectionHandler.Completion
    ) {
        var formatted = ByteBuffer()
        for command in commands { RESPReader.format(command, into: &formatted) }
        let bytes = formatted
        let slot = slots[ObjectIdentifier(eventLoop)] ?? firstSlot
        if slot.loop.inEventLoop {
            slot.send(bytes, replyCount: commands.count, purpose: purpose, completion: completion)
        } else {
            slot.loop.execute { slot.send(bytes, replyCount: commands.count, purpose: purpose, completion: completion) }
        }
    }

    /// ``execute(_:purpose:on:completion:)`` with a future, on `eventLoop`.
    func execute(_ commands: [[[UInt8]]], purpose: Purpose, on eventLoop: any EventLoop) -> EventLoopFuture<[RESPValue]>
    {
        let promise = eventLoop.makePromise(of: [RESPValue].self)
        execute(commands, purpose: purpose, on: eventLoop) { promise.completeWith($0.mapError { $0 }) }
        return promise.futureResult
    }

    /// Waits for `eventLoop`'s connection: succeeds once it is up, fails with the next failed
    /// attempt's error. (Tests wait on it instead of polling.)
    func nextConnection(on eventLoop: any EventLoop) -> EventLoopFuture<Void> {
        let slot = slots[ObjectIdentifier(eventLoop)] ?? firstSlot
        return slot.loop.flatSubmit { slot.nextConnection() }.hop(to: eventLoop)
    }

    /// A loop for requests made off every event loop.
    var anyEventLoop: any EventLoop { firstSlot.loop }

    /// Connects every loop's connection, then waits for graceful shutdown and closes them.
    public func run() async throws {
        logger.info("redis second cache tier", metadata: ["redis": "\(configuration.endpoint)"])
        for slot in slots.values { slot.loop.execute { slot.connect() } }
        try? await gracefulShutdown()
        for slot in slots.values { try? await slot.loop.flatSubmit { slot.stop() }.get() }
    }
}
