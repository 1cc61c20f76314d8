import Logging
import NIOConcurrencyHelpers
import NIOCore
import ServiceLifecycle

/// An ``UpstreamTransport`` that speaks DNS over TLS (RFC 7858) to one upstream resolver, through
/// GnuTLS.
///
/// Each event loop keeps its own connections to the upstream, so a query is sent and answered on the
/// loop that asked, without hops. Connections stay open and carry many queries at once, with IDs
/// rewritten per connection and replies matched out of order. Queries are padded to 128-octet blocks
/// (RFC 8467) and padding is stripped from replies. A connection reset or closed by the upstream has
/// its in-flight queries retried once on a fresh connection; the session ticket from the last
/// connection is offered so reconnects resume. Every query has a deadline that also covers a
/// connection that never answers.
///
/// Used alone (not as a member of an ``UpstreamPool``, which stops its members), it is a `Service`:
/// list it before the ``DNSProxyServer`` in the `ServiceGroup`, and it closes its connections once
/// the server has drained.
public final class DoTUpstreamTransport: UpstreamTransport, Service {
    /// How the transport behaves; what TLS does is in the ``TLSClientContext``.
    public struct Configuration: Sendable {
        /// The upstream resolver.
        public var upstream: UpstreamAddress
        /// How long a TCP connect may take.
        public var connectTimeout: TimeAmount
        /// Close a connection after this long without queries; shorter than common upstreams' own idle
        /// timeouts (Unbound and Cloudflare close after about 10 s).
        public var idleTimeout: TimeAmount
        /// The most connections each event loop opens to the upstream.
        public var maximumConnectionsPerEventLoop: Int
        /// The most queries in flight on one connection; past that a new connection opens, and when
        /// none may, queries fail at once with ``UpstreamError/Code/overloaded``.
        public var maximumInFlightPerConnection: Int
        /// Replace a connection after this many queries, if set.
        public var maximumQueriesPerConnection: Int?
        /// Replace a connection after this long, if set.
        public var maximumConnectionAge: TimeAmount?
        /// Pad queries to a multiple of this many octets; 0 disables padding.
        public var paddingBlockSize: Int

        /// The default for ``maximumConnectionsPerEventLoop``.
        public static let defaultMaximumConnectionsPerEventLoop = 4

        /// Creates a configuration with defaults for everything but the upstream.
        ///
        /// - Parameters:
        ///   - upstream: The upstream resolver.
        ///   - connectTimeout: How long a TCP connect may take; 2 s.
        ///   - idleTimeout: Idle time before a connection closes; 8 s.
        ///   - maximumConnectionsPerEventLoop: Connections per event loop; 4.
        ///   - maximumInFlightPerConnection: Queries in flight per connection; 256.
        ///   - maximumQueriesPerConnection: Queries before a connection is replaced; no limit.
        ///   - maximumConnectionAge: Age before a connection is replaced; no limit.
        ///   - paddingBlockSize: The padding block; 128 (RFC 8467).
        public init(
            upstream: UpstreamAddress,
            connectTimeout: TimeAmount = .seconds(2),
            idleTimeout: TimeAmount = .seconds(8),
            maximumConnectionsPerEventLoop: Int = defaultMaximumConnectionsPerEventLoop,
            maximumInFlightPerConnection: Int = 256,
            maximumQueriesPerConnection: Int? = nil,
            maximumConnectionAge: TimeAmount? = nil,
            paddingBlockSize: Int = 128
        ) {
            self.upstream = upstream
            self.connectTimeout = connectTimeout
            self.idleTimeout = idleTimeout
            self.maximumConnectionsPerEventLoop = maximumConnectionsPerEventLoop
            self.maximumInFlightPerConnection = maximumInFlightPerConnection
            self.maximumQueriesPerConnection = maximumQueriesPerConnection
            self.maximumConnectionAge = maximumConnectionAge
            self.paddingBlockSize = paddingBlockSize
        }
    }

    /// The configuration in effect.
    public let configuration: Configuration
    private let tlsContext: TLSClientContext
    private let logger: Logger
    private let metrics: UpstreamMetrics
    private let resumptionData = NIOLockedValueBox<[UInt8]?>(nil)
    private let connectionSets = NIOLockedValueBox<[ObjectIdentifier: NIOLoopBound<DoTConnectionSet>]>([:])

    /// Creates a transport. No connection opens until the first query.
    ///
    /// - Parameters:
    ///   - configuration: The upstream and the connection behaviour.
    ///   - tlsContext: Trust, versions, verification and pins; share one context between transports.
    ///   - name: What logs, errors and metrics call the upstream; its address by default.
    ///   - metrics: Where connections open and TLS handshakes (resumed or not) are reported, labelled
    ///     with ``name``.
    ///   - logger: Receives connection events (debug) and warnings.
    public convenience init(
        configuration: Configuration,
        tlsContext: TLSClientContext,
        name: String? = nil,
        metrics: DNSProxyMetrics = DNSProxyMetrics(),
        logger: Logger = Logger(label: "dotproxy.upstream")
    ) {
        let name = name ?? configuration.upstream.description
        self.init(configuration: configuration, tlsContext: tlsContext, metrics: metrics.upstream(name), logger: logger)
    }

    /// Creates a transport whose metrics carry another name (a host name's, for its addresses).
    init(configuration: Configuration, tlsContext: TLSClientContext, metrics: UpstreamMetrics, logger: Logger) {
        self.configuration = configuration
        self.metrics = metrics
        self.tlsContext = tlsContext
        var logger = logger
        logger[metadataKey: "upstream"] = "\(configuration.upstream)"
        self.logger = logger
    }

    /// What errors, logs and metrics call the upstream: the name it was given, or its address.
    public var name: String { metrics.name }

    public func send(
        _ query: ParsedDNSMessage,
        deadline: NIODeadline,
        on eventLoop: any EventLoop,
        completion: @escaping @Sendable (Result<ParsedDNSMessage, UpstreamError>) -> Void
    ) {
        if eventLoop.inEventLoop {
            submit(query, deadline: deadline, on: eventLoop, completion: completion)
        } else {
            eventLoop.execute {
                self.submit(query, deadline: deadline, on: eventLoop, completion: completion)
            }
        }
    }

    private func submit(
        _ message: ParsedDNSMessage,
        deadline: NIODeadline,
        on eventLoop: any EventLoop,
        completion: @escaping @Sendable (Result<ParsedDNSMessage, UpstreamError>) -> Void
    ) {
        let loopConnections = connections(for: eventLoop)
        let query = DoTQuery(
            query: message,
            paddingBlockSize: configuration.paddingBlockSize,
            deadline: deadline,
            completion: completion
        )
        loopConnections.submit(query)
    }

    /// The connections of `eventLoop`, created on first use; call on that loop.
    private func connections(for eventLoop: any EventLoop) -> DoTConnectionSet {
        let key = ObjectIdentifier(eventLoop)
        return connectionSets.withLockedValue { connectionSets in
            if let connections = connectionSets[key] { return connections.value }
            let connections = DoTConnectionSet(
                eventLoop: eventLoop,
                configuration: configuration,
                tlsContext: tlsContext,
                resumptionData: resumptionData,
                metrics: metrics,
                logger: logger
            )
            connectionSets[key] = NIOLoopBound(connections, eventLoop: eventLoop)
            return connections
        }
    }

    /// The connections open now, over every event loop. (Its events are counted in the metrics:
    /// ``DNSProxyMetrics/Name/upstreamConnectionsOpened``, handshakes, retries, dropped replies.)
    public func openConnections() async -> Int {
        var total = 0
        for (loop, connections) in connectionSetsByLoop() {
            total += (try? await loop.submit { connections.value.openConnections }.get()) ?? 0
        }
        return total
    }

    /// Waits for graceful shutdown (or cancellation), then closes every connection.
    public func run() async throws {
        try? await gracefulShutdown()
        await shutdown()
    }

    /// Closes every connection (with close_notify) and fails queries submitted afterwards.
    public func shutdown() async {
        for (loop, connections) in connectionSetsByLoop() {
            try? await loop.submit { connections.value.shutdown() }.get()
        }
    }

    private func connectionSetsByLoop() -> [(any EventLoop, NIOLoopBound<DoTConnectionSet>)] {
        connectionSets.withLockedValue { $0.values.map { ($0.eventLoop, $0) } }
    }
}
