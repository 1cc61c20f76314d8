import Logging
import NIOConcurrencyHelpers
import NIOCore

/// A DoT upstream given by host name (`tls://dns.quad9.net`): the name is resolved through an
/// ``UpstreamHostResolver``, queries go to a ``DoTUpstreamTransport`` for its first address, and the
/// certificate is verified against the name.
///
/// The name is resolved on the first query (or at once with ``prepare(on:)``) and again when the
/// answer's TTL has passed. A refresh runs in the background while queries keep using the current
/// address; when the address changes, new queries go to the new one and the old connections close
/// when idle. A failed lookup fails the query with ``UpstreamError/Code/connectionFailed``, which an
/// ``UpstreamPool`` counts against the upstream's health; its probes then retry the lookup.
public final class HostnameUpstreamTransport: UpstreamTransport {
    /// The host name.
    public let host: String
    /// The DoT port.
    public let port: Int
    private let authenticationName: String
    private let resolver: any UpstreamHostResolver
    private let tlsContext: TLSClientContext
    private let template: DoTUpstreamTransport.Configuration
    private let logger: Logger
    private let metrics: DNSProxyMetrics
    private let givenName: String?
    private let state = NIOLockedValueBox(State())

    private struct State {
        var current: DoTUpstreamTransport?
        var expires: NIODeadline = .distantPast
        var lookup: EventLoopFuture<DoTUpstreamTransport>?
        var lookups = 0
    }

    /// Creates a transport. Nothing is resolved until the first query or ``prepare(on:)``.
    ///
    /// - Parameters:
    ///   - host: The upstream's host name.
    ///   - port: The DoT port; 853.
    ///   - authenticationName: The name its certificate must carry; the host name by default.
    ///   - resolver: Resolves the host name.
    ///   - tlsContext: Trust, versions, verification and pins.
    ///   - configuration: Connection settings for each address; its `upstream` is replaced.
    ///   - name: What logs, errors and metrics call the upstream; `tls://host:port#name` by default.
    ///   - metrics: Where each address's connections and handshakes are reported, labelled with
    ///     ``name`` rather than the address.
    ///   - logger: Receives address changes and lookup failures.
    public init(
        host: String,
        port: Int = 853,
        authenticationName: String? = nil,
        resolver: any UpstreamHostResolver,
        tlsContext: TLSClientContext,
        configuration: DoTUpstreamTransport.Configuration? = nil,
        name: String? = nil,
        metrics: DNSProxyMetrics = DNSProxyMetrics(),
        logger: Logger = Logger(label: "dotproxy.upstream")
    ) {
        self.givenName = name
        self.metrics = metrics
        self.host = host
        self.port = port
        self.authenticationName = authenticationName ?? host
        self.resolver = resolver
        self.tlsContext = tlsContext
        self.template =
            configuration ?? DoTUpstreamTransport.Configuration(upstream: UpstreamAddress(host: host, port: port))
        self.logger = logger
    }

    /// What errors, logs and metrics call the upstream: the name it was given, or its description,
    /// `tls://host:port#name`.
    public var name: String {
        givenName ?? "tls://\(host):\(port)" + (authenticationName == host ? "" : "#\(authenticationName)")
    }

    /// The address queries go to now, once resolved.
    public var currentAddress: UpstreamAddress? {
        state.withLockedValue { $0.current?.configuration.upstream }
    }

    /// How many lookups have been started.
    public var lookupCount: Int {
        state.withLockedValue { $0.lookups }
    }

    /// Resolves the name now, so the first query does not wait for it.
    ///
    /// - Parameter eventLoop: Where to run the lookup.
    /// - Returns: The address chosen, or the lookup's error.
    @discardableResult
    public func prepare(on eventLoop: any EventLoop) -> EventLoopFuture<UpstreamAddress> {
        lookup(on: eventLoop).map { $0.configuration.upstream }
    }

    /// Starts resolving the name (``prepare(on:)``); a failure is logged, and the next query or probe
    /// tries again.
    public func start(on eventLoop: any EventLoop) {
        prepare(on: eventLoop)
    }

    public func send(
        _ query: ParsedDNSMessage,
        deadline: NIODeadline,
        on eventLoop: any EventLoop,
        completion: @escaping @Sendable (Result<ParsedDNSMessage, UpstreamError>) -> Void
    ) {
        let now = eventLoop.now
        let (current, stale) = state.withLockedValue { ($0.current, now >= $0.expires && $0.lookup == nil) }
        guard let current else {
            lookup(on: eventLoop).whenComplete { result in
                switch result {
                case .success(let transport):
                    transport.send(query, deadline: deadline, on: eventLoop, completion: completion)
                case .failure(let error):
                    completion(.failure(UpstreamError.wrapping(error, upstream: self.name)))
                }
            }
            return
        }
        if stale { _ = lookup(on: eventLoop) }
        current.send(query, deadline: deadline, on: eventLoop, completion: completion)
    }

    /// Starts a lookup, or joins the one in progress.
    private func lookup(on eventLoop: any EventLoop) -> EventLoopFuture<DoTUpstreamTransport> {
        let promise = eventLoop.makePromise(of: DoTUpstreamTransport.self)
        let running = state.withLockedValue { state -> EventLoopFuture<DoTUpstreamTransport>? in
            if let lookup = state.lookup { return lookup }
            state.lookups += 1
            state.lookup = promise.futureResult
            return nil
        }
        if let running {
            promise.completeWith(running)
            return promise.futureResult
        }
        // Outside the lock: a resolver may complete at once, and adopting takes the lock.
        resolver.resolve(host, on: eventLoop).flatMapThrowing { resolution in
            try self.adopt(resolution, now: eventLoop.now)
        }.whenComplete { result in
            if case .failure(let error) = result {
                self.logger.warning(
                    "cannot resolve upstream",
                    metadata: ["upstream": "\(self.name)", "error": "\(error)"]
                )
                self.state.withLockedValue { $0.lookup = nil }
            }
            promise.completeWith(result)
        }
        return promise.futureResult
    }

    /// Installs a lookup's result: a new transport when the first address changed.
    private func adopt(_ resolution: UpstreamHostResolution, now: NIODeadline) throws -> DoTUpstreamTransport {
        guard let address = resolution.addresses.first else {
            throw UpstreamError(.connectionFailed, upstream: name, detail: "the name has no addresses")
        }
        let (transport, changed) = state.withLockedValue { state -> (DoTUpstreamTransport, Bool) in
            state.lookup = nil
            state.expires = now + resolution.timeToLive
            if let current = state.current, current.configuration.upstream.host == address { return (current, false) }
            var configuration = template
            configuration.upstream = UpstreamAddress(host: address, port: port, authenticationName: authenticationName)
            let transport = DoTUpstreamTransport(
                configuration: configuration,
                tlsContext: tlsContext,
                metrics: metrics.upstream(name),
                logger: logger
            )
            state.current = transport
            return (transport, true)
        }
        if changed {
            logger.info(
                "upstream resolved",
                metadata: ["upstream": "\(name)", "address": "\(address)", "ttl": "\(resolution.timeToLive)"]
            )
        }
        return transport
    }

    /// Closes the current address's connections.
    public func shutdown() async {
        await state.withLockedValue { $0.current }?.shutdown()
    }
}
