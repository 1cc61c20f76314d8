import CoreMetrics
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import ServiceLifecycle

#if canImport(Glibc)
import Glibc
#endif

/// The client side of the proxy: UDP and TCP listeners for plain DNS, and DNS-over-TLS listeners
/// (RFC 7858), that pass every query to a ``DNSQueryHandler``, run as a swift-service-lifecycle
/// `Service`.
///
/// Each plain listen address gets one UDP socket per event loop (SO_REUSEPORT spreads clients over
/// them) and one TCP listener; each TLS address one TCP listener whose connections run a GnuTLS server
/// session (``TLSServerContext``) under the same framing, pipelining and limits as TCP. On graceful
/// shutdown (SIGTERM or SIGINT through a `ServiceGroup`) the server stops accepting and reading,
/// answers what is in flight for up to the grace period, then closes.
public final class DNSProxyServer: Service {
    /// Listener behaviour.
    public struct Configuration: Sendable {
        /// Where to listen, UDP and TCP. Port 0 picks a free port, the same for UDP and TCP.
        public var listenAddresses: [SocketAddress]
        /// Close a TCP connection after this long without a whole query or a reply.
        public var tcpIdleTimeout: TimeAmount
        /// The idle timeout while more than half of ``maximumTCPConnections`` are open.
        public var tcpBusyIdleTimeout: TimeAmount
        /// A query must arrive whole within this long of its first octet, or the connection closes.
        public var tcpQueryReadTimeout: TimeAmount
        /// Close a TCP connection whose replies could not be written for this long (a client that
        /// does not read).
        public var tcpWriteStallTimeout: TimeAmount
        /// Reply octets one TCP connection may hold unsent before it is not read until they drain
        /// (the channel's write-buffer high-water mark; it reads again below half of it).
        public var maximumUnsentBytesPerTCPConnection: Int
        /// The most TCP connections open at once.
        public var maximumTCPConnections: Int
        /// The most TCP connections from one client: one IPv4 address, or one IPv6 /64.
        public var maximumTCPConnectionsPerClient: Int
        /// The most queries in progress on one TCP connection, cache hits and misses alike, from when
        /// they are read until their replies reach the kernel; past it the connection is not read.
        public var maximumQueriesInFlightPerTCPConnection: Int
        /// The most new TCP connections per second from one client address (twice that at once); 0 for
        /// no limit.
        public var maximumNewTCPConnectionsPerSecondPerClient: Double
        /// How long to keep answering queries in flight after shutdown begins.
        public var shutdownGracePeriod: TimeAmount
        /// Where to listen for DNS over TLS; none by default. Needs a ``TLSServerContext``.
        public var tlsListenAddresses: [SocketAddress] = []
        /// A client's TLS handshake must be done within this long of its connection, or it is closed.
        public var tlsHandshakeTimeout: TimeAmount = .seconds(5)
        /// The most DNS-over-TLS connections open at once (handshaking or not). The per-client cap,
        /// the rate of new connections, the timeouts and the in-flight and unsent-octet bounds are the
        /// TCP ones.
        public var maximumTLSConnections: Int = 1024
        /// The receive buffer of each UDP socket, in octets (`SO_RCVBUF`; the kernel caps it at
        /// `net.core.rmem_max` and doubles it for its bookkeeping); 0 keeps the system's default. A
        /// burst that arrives while the event loop is busy waits here instead of being dropped: the
        /// system's usual 208 KiB holds about 5 ms of 40,000 queries a second, 4 MiB about 100 ms.
        public var udpReceiveBufferSize: Int = 4 << 20

        /// Creates a configuration.
        ///
        /// - Parameters:
        ///   - listenAddresses: Where to listen; 127.0.0.1:5053 by default (loopback only).
        ///   - tcpIdleTimeout: TCP idle timeout; 10 s.
        ///   - tcpBusyIdleTimeout: TCP idle timeout when more than half the connections are open; 1 s.
        ///   - tcpQueryReadTimeout: Time for a query to arrive whole from its first octet; 5 s.
        ///   - tcpWriteStallTimeout: Time a connection may stay unable to take replies; 10 s.
        ///   - maximumUnsentBytesPerTCPConnection: Unsent reply octets per connection; 64 KiB.
        ///   - maximumTCPConnections: TCP connections in total; 1,024.
        ///   - maximumTCPConnectionsPerClient: TCP connections per client address (IPv6: per /64); 16.
        ///   - maximumQueriesInFlightPerTCPConnection: Queries in progress per connection; 100.
        ///   - maximumNewTCPConnectionsPerSecondPerClient: New connections per second per client; 50.
        ///   - shutdownGracePeriod: Time to answer in-flight queries at shutdown; 5 s.
        public init(
            listenAddresses: [SocketAddress] = [try! SocketAddress(ipAddress: "127.0.0.1", port: 5053)],
            tcpIdleTimeout: TimeAmount = .seconds(10),
            tcpBusyIdleTimeout: TimeAmount = .seconds(1),
            tcpQueryReadTimeout: TimeAmount = .seconds(5),
            tcpWriteStallTimeout: TimeAmount = .seconds(10),
            maximumUnsentBytesPerTCPConnection: Int = 64 << 10,
            maximumTCPConnections: Int = 1024,
            maximumTCPConnectionsPerClient: Int = 16,
            maximumQueriesInFlightPerTCPConnection: Int = 100,
            maximumNewTCPConnectionsPerSecondPerClient: Double = 50,
            shutdownGracePeriod: TimeAmount = .seconds(5)
        ) {
            self.maximumNewTCPConnectionsPerSecondPerClient = maximumNewTCPConnectionsPerSecondPerClient
            self.listenAddresses = listenAddresses
            self.tcpIdleTimeout = tcpIdleTimeout
            self.tcpBusyIdleTimeout = tcpBusyIdleTimeout
            self.tcpQueryReadTimeout = tcpQueryReadTimeout
            self.tcpWriteStallTimeout = tcpWriteStallTimeout
            self.maximumUnsentBytesPerTCPConnection = maximumUnsentBytesPerTCPConnection
            self.maximumTCPConnections = maximumTCPConnections
            self.maximumTCPConnectionsPerClient = maximumTCPConnectionsPerClient
            self.maximumQueriesInFlightPerTCPConnection = maximumQueriesInFlightPerTCPConnection
            self.shutdownGracePeriod = shutdownGracePeriod
        }
    }

    private struct Listener {
        var channel: any Channel
        var udpHandler: NIOLoopBound<UDPListenerHandler>?
    }

    private typealias TCPConnection = (channel: any Channel, handler: NIOLoopBound<TCPClientConnectionHandler>)

    /// The configuration in effect.
    public let configuration: Configuration
    private let handler: any DNSQueryHandler
    private let group: any EventLoopGroup
    private let logger: Logger
    private let bindTCP: TCPBinder
    private let metrics: DNSProxyMetrics
    private let limiter: TCPConnectionLimiter
    private let tlsLimiter: TCPConnectionLimiter
    private let connectionRate: (any QueryRateLimiter)?
    private let tls: NIOLockedValueBox<TLSServerContext?>
    private let logThrottle = LogThrottle()
    private let connections = NIOLockedValueBox<[ObjectIdentifier: TCPConnection]>([:])
    /// The addresses bound: plain DNS, then TLS.
    private typealias Bound = (plain: [SocketAddress], tls: [SocketAddress])
    private enum ListeningState {
        case waiting([CheckedContinuation<Bound, any Error>])
        case listening(Bound)
        case failed(any Error)
    }

    private let listening = NIOLockedValueBox(ListeningState.waiting([]))

    /// Creates a server; nothing binds until ``run()``.
    ///
    /// - Parameters:
    ///   - configuration: Listeners and limits.
    ///   - handler: Answers each query; usually a ``ForwardingQueryHandler``.
    ///   - eventLoopGroup: The event loops to serve on.
    ///   - tlsContext: The certificate and key of the TLS listeners; needed when
    ///     ``Configuration/tlsListenAddresses`` has any.
    ///   - metrics: Where open client connections and TLS handshakes are reported (queries and replies
    ///     are the handler's).
    ///   - logger: Receives start-up, shutdown and error messages.
    public convenience init(
        configuration: Configuration,
        handler: any DNSQueryHandler,
        eventLoopGroup: any EventLoopGroup,
        tlsContext: TLSServerContext? = nil,
        metrics: DNSProxyMetrics = DNSProxyMetrics(),
        logger: Logger = Logger(label: "dotproxy.server")
    ) {
        self.init(
            configuration: configuration,
            handler: handler,
            eventLoopGroup: eventLoopGroup,
            tlsContext: tlsContext,
            metrics: metrics,
            logger: logger,
            bindTCP: { bootstrap, address in try await bootstrap.bind(to: address).get() }
        )
    }

    /// Binds a TCP listener; tests put a failing one in to reach the retry for port 0.
    typealias TCPBinder = @Sendable (ServerBootstrap, SocketAddress) async throws -> any Channel

    init(
        configuration: Configuration,
        handler: any DNSQueryHandler,
        eventLoopGroup: any EventLoopGroup,
        tlsContext: TLSServerContext? = nil,
        metrics: DNSProxyMetrics,
        logger: Logger,
        bindTCP: @escaping TCPBinder
    ) {
        self.bindTCP = bindTCP
        self.tls = NIOLockedValueBox(tlsContext)
        self.tlsLimiter = TCPConnectionLimiter(
            maximumTotal: configuration.maximumTLSConnections,
            maximumPerClient: configuration.maximumTCPConnectionsPerClient
        )
        self.metrics = metrics
        self.configuration = configuration
        self.handler = handler
        self.group = eventLoopGroup
        self.logger = logger
        self.limiter = TCPConnectionLimiter(
            maximumTotal: configuration.maximumTCPConnections,
            maximumPerClient: configuration.maximumTCPConnectionsPerClient
        )
        let rate = configuration.maximumNewTCPConnectionsPerSecondPerClient
        self.connectionRate =
            rate > 0
            ? TokenBucketRateLimiter(
                configuration: .init(queriesPerSecond: rate, action: .drop, maximumPrefixes: 10_000),
                // Its evictions are not the query limiter's, which the metric counts.
                metrics: DNSProxyMetrics(factory: NOOPMetricsHandler.instance)
            ) : nil
    }

    /// The certificate and key new TLS connections use.
    public var tlsContext: TLSServerContext? { tls.withLockedValue { $0 } }

    /// Makes new TLS connections use `context`; connections already open keep theirs.
    public func replaceTLSContext(_ context: TLSServerContext) {
        tls.withLockedValue { $0 = context }
    }

    /// The addresses the server listens on for plain DNS, once it does (with the real port when 0
    /// was asked for).
    ///
    /// - Throws: The bind error, when the server could not start.
    public func listeningAddresses() async throws -> [SocketAddress] {
        try await boundAddresses().plain
    }

    /// The addresses the server listens on for DNS over TLS, once it does.
    ///
    /// - Throws: The bind error, when the server could not start.
    public func tlsListeningAddresses() async throws -> [SocketAddress] {
        try await boundAddresses().tls
    }

    private func boundAddresses() async throws -> Bound {
        try await withCheckedThrowingContinuation { continuation in
            listening.withLockedValue { state in
                switch state {
                case .waiting(var waiters):
                    waiters.append(continuation)
                    state = .waiting(waiters)
                case .listening(let addresses):
                    continuation.resume(returning: addresses)
                case .failed(let error):
                    continuation.resume(throwing: error)
                }
            }
        }
    }

    private func settleListening(_ result: Result<Bound, any Error>) {
        let waiters: [CheckedContinuation<Bound, any Error>] = listening.withLockedValue { state in
            guard case .waiting(let waiters) = state else { return [] }
            switch result {
            case .success(let addresses): state = .listening(addresses)
            case .failure(let error): state = .failed(error)
            }
            return waiters
        }
        for waiter in waiters { waiter.resume(with: result) }
    }

    /// Binds the listeners, serves until graceful shutdown, then drains and closes.
    ///
    /// - Throws: The bind error (for example, the port is in use or needs privileges).
    public func run() async throws {
        var listeners: [Listener] = []
        do {
            var bound: [SocketAddress] = []
            for address in configuration.listenAddresses {
                let (address, addressListeners) = try await bindListeners(for: address)
                listeners += addressListeners
                bound.append(address)
            }
            var boundTLS: [SocketAddress] = []
            if !configuration.tlsListenAddresses.isEmpty {
                guard tlsContext != nil else {
                    throw GnuTLSError(message: "TLS listeners need a certificate and key", operation: "listen")
                }
                for address in configuration.tlsListenAddresses {
                    let channel = try await bindTCP(makeStreamBootstrap(for: .tls), address)
                    listeners.append(Listener(channel: channel, udpHandler: nil))
                    boundTLS.append(channel.localAddress ?? address)
                }
            }
            settleListening(.success((bound, boundTLS)))
            var metadata: Logger.Metadata = ["addresses": .array(bound.map { .string($0.endpointDescription) })]
            if !boundTLS.isEmpty { metadata["tls"] = .array(boundTLS.map { .string($0.endpointDescription) }) }
            logger.info("listening", metadata: metadata)
        } catch {
            settleListening(.failure(error))
            for listener in listeners { try? await listener.channel.close() }
            throw error
        }

        try? await gracefulShutdown()
        await drain(listeners)
    }

    /// How many ports a listen address with port 0 tries before giving up.
    static let ephemeralPortAttempts = 8
    /// Datagrams read per `recvmmsg`.
    static let datagramsPerRead = 16
    /// UDP reads per wake-up while reads come back full (see ``DatagramReadBudget``).
    static let readsPerWakeUpUnderLoad: UInt = 16
    /// The largest UDP query read whole; longer datagrams are cut there and answered FORMERR.
    static let maximumUDPQuerySize = 2048

    /// Binds one address: a UDP socket per event loop (SO_REUSEPORT), then the TCP listener on the
    /// same port. With port 0 the kernel picks the UDP port, and TCP may already use it (an outgoing
    /// connection's local port, for one); then the UDP sockets are closed and another port is tried.
    private func bindListeners(for requested: SocketAddress) async throws -> (SocketAddress, [Listener]) {
        let segmentsReplies = segmentsUDPReplies(listeningOn: requested)
        let receiveBuffer = configuration.udpReceiveBufferSize
        var attempt = 1
        while true {
            var address = requested
            var listeners: [Listener] = []
            do {
                for loop in group.makeIterator() {
                    let udpHandler = try await loop.submit {
                        NIOLoopBound(UDPListenerHandler(handler: self.handler), eventLoop: loop)
                    }.get()
                    var bootstrap = DatagramBootstrap(group: loop)
                    if receiveBuffer > 0 {
                        bootstrap = bootstrap.channelOption(
                            .socketOption(.so_rcvbuf),
                            value: SocketOptionValue(clamping: receiveBuffer)
                        )
                    }
                    let channel =
                        try await bootstrap
                        .channelOption(.socketOption(.so_reuseaddr), value: 1)
                        .channelOption(
                            ChannelOptions.socket(SocketOptionLevel(SOL_SOCKET), SocketOptionName(SO_REUSEPORT)),
                            value: 1
                        )
                        // One read per wake-up until reads come back full (UDPListenerHandler
                        // raises it, see DatagramReadBudget).
                        .channelOption(.maxMessagesPerRead, value: DatagramReadBudget.singleRead)
                        // recvmmsg: up to 16 datagrams per system call, each in its own slice of one
                        // buffer. NIO's default buffer (2,048 bytes) would give each slice 128 bytes.
                        .channelOption(.datagramVectorReadMessageCount, value: Self.datagramsPerRead)
                        .channelOption(
                            .recvAllocator,
                            value: FixedSizeRecvByteBufferAllocator(
                                capacity: Self.datagramsPerRead * Self.maximumUDPQuerySize
                            )
                        )
                        .channelInitializer { channel in
                            channel.eventLoop.makeCompletedFuture {
                                if segmentsReplies {
                                    try channel.pipeline.syncOperations.addHandler(UDPReplyCoalescer())
                                }
                                try channel.pipeline.syncOperations.addHandler(udpHandler.value)
                            }
                        }
                        .bind(to: address).get()
                    listeners.append(Listener(channel: channel, udpHandler: udpHandler))
                    if address.port == 0, let port = channel.localAddress?.port { address.port = port }
                }
                let tcp = try await bindTCP(makeStreamBootstrap(for: .tcp), address)
                listeners.append(Listener(channel: tcp, udpHandler: nil))
                return (address, listeners)
            } catch {
                for listener in listeners { try? await listener.channel.close() }
                let portTakenForTCP =
                    (error as? IOError)?.errnoCode == EADDRINUSE && requested.port == 0 && !listeners.isEmpty
                guard portTakenForTCP, attempt < Self.ephemeralPortAttempts else { throw error }
                logger.debug(
                    "the port picked for UDP is taken for TCP; trying another",
                    metadata: ["port": .stringConvertible(address.port ?? 0)]
                )
                attempt += 1
            }
        }
    }

    /// Whether a UDP listener on `address` sends replies to one client in segmented datagrams
    /// (`UDPReplyCoalescer`): on Linux with `UDP_SEGMENT`, for listeners on loopback addresses, whose
    /// clients are reached only over the loopback device, and only if a segmented datagram sent there
    /// at start-up goes out.
    private func segmentsUDPReplies(listeningOn address: SocketAddress) -> Bool {
        guard UDPSegmentation.isCandidate(address) else { return false }
        do {
            try UDPSegmentation.sendProbe(from: address)
            return true
        } catch {
            logger.notice(
                "UDP replies are sent one datagram each: a segmented datagram failed",
                metadata: ["address": "\(address.endpointDescription)", "error": "\(error)"]
            )
            return false
        }
    }

    /// A listener for TCP (plain DNS) or TLS connections: both take the per-client rate of new
    /// connections and their own connection cap, then frame queries alike; TLS connections run a
    /// GnuTLS server session, with the context of the moment they are accepted, under that.
    private func makeStreamBootstrap(for clientProtocol: ClientProtocol) -> ServerBootstrap {
        let isTLS = clientProtocol == .tls
        let limiter = isTLS ? self.tlsLimiter : self.limiter
        let connectionRate = self.connectionRate
        let connections = self.connections
        let handler = self.handler
        let configuration = self.configuration
        let metrics = self.metrics
        let openConnections = isTLS ? metrics.clientTLSConnections : metrics.clientConnections
        let tls = self.tls
        let throttle = self.logThrottle
        let logger = self.logger
        return ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            // Out of descriptors, accept fails at once while the connection waits in the backlog:
            // without a back-off the listener retries in a loop (NIO adds this handler only to its
            // async bind).
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(AcceptBackoffHandler())
                }
            }
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelOption(.autoRead, value: true)
            .childChannelOption(
                .writeBufferWaterMark,
                value: .init(
                    low: configuration.maximumUnsentBytesPerTCPConnection / 2,
                    high: configuration.maximumUnsentBytesPerTCPConnection
                )
            )
            // One read takes at most 64 KiB, which bounds what a connection holds unparsed.
            .childChannelOption(
                .recvAllocator,
                value: AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 2048, maximum: Self.maximumTCPReadSize)
            )
            .childChannelInitializer { channel in
                guard let remote = channel.remoteAddress, let client = ClientAddress(remote) else {
                    return channel.close()
                }
                if let connectionRate, connectionRate.decide(for: client, clientProtocol: .tcp, now: .now()) != .admit {
                    metrics.recordRefusedConnection(clientProtocol: clientProtocol, rate: true)
                    Self.logRefusal(remote, reason: "rate", clientProtocol, throttle: throttle, logger: logger)
                    return channel.close()
                }
                guard limiter.admit(client) else {
                    metrics.recordRefusedConnection(clientProtocol: clientProtocol, rate: false)
                    Self.logRefusal(remote, reason: "limit", clientProtocol, throttle: throttle, logger: logger)
                    return channel.close()
                }
                openConnections.increment()
                if isTLS { metrics.clientTLSAccepted.increment() }
                channel.closeFuture.whenComplete { _ in
                    limiter.release(client)
                    openConnections.decrement()
                    connections.withLockedValue { _ = $0.removeValue(forKey: ObjectIdentifier(channel)) }
                }
                return channel.eventLoop.makeCompletedFuture {
                    let pipeline = channel.pipeline.syncOperations
                    if isTLS {
                        guard let context = tls.withLockedValue({ $0 }) else { throw ChannelError.ioOnClosedChannel }
                        try pipeline.addHandler(GnuTLSHandler(server: context))
                        try pipeline.addHandler(
                            TLSClientHandshakeHandler(
                                deadline: configuration.tlsHandshakeTimeout,
                                metrics: metrics,
                                throttle: throttle,
                                logger: logger
                            )
                        )
                    }
                    let streamHandler = try Self.addClientTCPHandlers(
                        to: pipeline,
                        handler: handler,
                        configuration: configuration,
                        slots: limiter,
                        clientProtocol: clientProtocol
                    )
                    let bound = NIOLoopBound(streamHandler, eventLoop: channel.eventLoop)
                    connections.withLockedValue { $0[ObjectIdentifier(channel)] = (channel, bound) }
                }
            }
    }

    /// Logs a connection closed at accept, at most once per interval for each reason.
    private static func logRefusal(
        _ remote: SocketAddress,
        reason: String,
        _ clientProtocol: ClientProtocol,
        throttle: LogThrottle,
        logger: Logger
    ) {
        guard let suppressed = throttle.admit("refused \(clientProtocol) \(reason)", now: .now()) else { return }
        logger.notice(
            reason == "rate"
                ? "client connection refused: too many new connections from the client"
                : "client connection refused: the connection limit is reached",
            metadata: [
                "client": "\(remote.endpointDescription)", "protocol": "\(clientProtocol)",
                "unlogged_since_last": .stringConvertible(suppressed),
            ]
        )
    }

    /// The most octets one read from a client TCP connection takes.
    static let maximumTCPReadSize = 64 << 10

    /// Sets up a client TCP connection's pipeline: the query handler, which does the RFC 1035 framing
    /// and keeps the connection's limits and timers, and which it returns.
    static func addClientTCPHandlers(
        to pipeline: ChannelPipeline.SynchronousOperations,
        handler: any DNSQueryHandler,
        configuration: Configuration,
        slots: TCPConnectionLimiter? = nil,
        clientProtocol: ClientProtocol = .tcp
    ) throws -> TCPClientConnectionHandler {
        let limits = TCPClientConnectionHandler.Limits(
            maximumInFlight: configuration.maximumQueriesInFlightPerTCPConnection,
            idleTimeout: configuration.tcpIdleTimeout,
            busyIdleTimeout: configuration.tcpBusyIdleTimeout,
            queryReadTimeout: configuration.tcpQueryReadTimeout,
            writeStallTimeout: configuration.tcpWriteStallTimeout
        )
        let tcpHandler = TCPClientConnectionHandler(
            handler: handler,
            limits: limits,
            slots: slots,
            clientProtocol: clientProtocol
        )
        try pipeline.addHandler(tcpHandler)
        return tcpHandler
    }

    /// Stops accepting and reading, waits for in-flight queries up to the grace period, then closes.
    private func drain(_ listeners: [Listener]) async {
        logger.info(
            "shutting down: answering queries in flight",
            metadata: ["grace": "\(configuration.shutdownGracePeriod)"]
        )
        var idle: [EventLoopFuture<Void>] = []
        for listener in listeners {
            if let udpHandler = listener.udpHandler {
                let loop = listener.channel.eventLoop
                try? await listener.channel.setOption(.autoRead, value: false).get()
                idle.append(loop.flatSubmit { udpHandler.value.drain.whenIdle(on: loop) })
            } else {
                try? await listener.channel.close()
            }
        }
        for (channel, tcpHandler) in connections.withLockedValue({ Array($0.values) }) {
            let loop = channel.eventLoop
            try? await channel.setOption(.autoRead, value: false).get()
            idle.append(loop.flatSubmit { tcpHandler.value.drain.whenIdle(on: loop) })
        }
        let loop = group.any()
        let grace = loop.makePromise(of: Void.self)
        let timer = loop.scheduleTask(in: configuration.shutdownGracePeriod) { grace.succeed() }
        EventLoopFuture.andAllComplete(idle, on: loop).cascade(to: grace)
        try? await grace.futureResult.get()
        timer.cancel()
        for listener in listeners where listener.udpHandler != nil { try? await listener.channel.close() }
        for (channel, _) in connections.withLockedValue({ Array($0.values) }) { try? await channel.close() }
        logger.info("stopped")
    }
}
