import DoTCore
import Logging
import NIOCore

/// Everything the command line decides, validated, ready to build the proxy from.
struct ProxyConfiguration: Sendable {
    var upstreams: [UpstreamArgument]
    var pool: UpstreamPool.Configuration
    /// Plain DNS servers that resolve `tls://` upstream names; empty means the system resolver.
    var bootstrap: [SocketAddress]
    var tls: TLSClientConfiguration
    var server: DNSProxyServer.Configuration
    var queryTimeout: TimeAmount
    var idleTimeout: TimeAmount
    var accessControl: AccessControlList
    var rateLimit: TokenBucketRateLimiter.Configuration?
    var cache: InMemoryDNSResponseCache.Configuration?
    var logLevel: Logger.Level
    var logJSON: Bool
    var logQueries: Bool

    /// One line for the start-up log.
    var summary: String {
        let listeners = server.listenAddresses.map { "\($0.ipAddress ?? "?"):\($0.port ?? 0)" }.joined(separator: ",")
        let pins = tls.spkiPins.isEmpty ? "" : " pins=\(tls.spkiPins.count)"
        let upstreamList = upstreams.map(\.description).joined(separator: ",")
        return "listen=\(listeners) upstream=\(upstreamList) policy=\(type(of: pool.policy)) max-fails=\(pool.maximumFailures) tls=\(tls.verification),min \(tls.minimumVersion),\(tls.trustRoots)\(pins) "
            + "timeout=\(queryTimeout) idle-timeout=\(idleTimeout) \(cacheSummary) allow=\(accessControl) " + rateLimitSummary
    }

    private var cacheSummary: String {
        guard let cache else { return "cache=off" }
        return "cache=\(cache.maximumEntries) entries/\(cache.maximumBytes >> 20) MiB ttl=\(cache.minimumTTL)-\(cache.maximumTTL)s negative<=\(cache.maximumNegativeTTL)s"
    }

    private var rateLimitSummary: String {
        guard let rateLimit else { return "rate-limit=off" }
        return "rate-limit=\(rateLimit.queriesPerSecond)/s burst=\(rateLimit.burst) per /\(rateLimit.ipv4PrefixLength) /\(rateLimit.ipv6PrefixLength) "
            + "action=\(rateLimit.action)"
    }
}

/// What `build` returns: the services to run, and the parts tests want to reach.
struct ProxyServices: Sendable {
    let server: DNSProxyServer
    let pool: UpstreamPool
    /// The pool's members, one per `--upstream`.
    let upstreams: [any UpstreamTransport]
    let handler: ForwardingQueryHandler
    let rateLimiter: (any QueryRateLimiter)?
    let cache: any DNSResponseCache

    /// Starts resolving the `tls://` upstream names, so the first query does not wait; a failure is
    /// logged and retried by the pool's probes.
    func resolveUpstreamNames(on group: any EventLoopGroup) {
        for case let upstream as HostnameUpstreamTransport in upstreams { upstream.prepare(on: group.next()) }
    }

    /// Stops the pool's probes and closes every upstream connection.
    func shutdownUpstreams() async {
        pool.shutdown()
        for upstream in upstreams {
            if let transport = upstream as? DoTUpstreamTransport { await transport.shutdown() }
            if let transport = upstream as? HostnameUpstreamTransport { await transport.shutdown() }
        }
    }
}

enum ProxyBuilder {
    /// Builds the proxy from a configuration. Loads trust roots, so it blocks briefly; call it before
    /// serving, never on an event loop.
    static func build(_ configuration: ProxyConfiguration, group: any EventLoopGroup, logger: Logger) throws -> ProxyServices {
        let context = try TLSClientContext(configuration: configuration.tls, logger: logger)
        let resolver: any UpstreamHostResolver =
            configuration.bootstrap.isEmpty ? SystemHostResolver() : BootstrapHostResolver(servers: configuration.bootstrap)
        let members = configuration.upstreams.map { upstream -> UpstreamPool.Member in
            switch upstream.target {
            case .address(let address):
                return UpstreamPool.Member(
                    DoTUpstreamTransport(configuration: .init(upstream: address, idleTimeout: configuration.idleTimeout), tlsContext: context, logger: logger))
            case .hostname(let host, let port, let name):
                let transport = HostnameUpstreamTransport(
                    host: host, port: port, authenticationName: name, resolver: resolver, tlsContext: context,
                    configuration: .init(upstream: UpstreamAddress(host: host, port: port), idleTimeout: configuration.idleTimeout), logger: logger)
                return UpstreamPool.Member(name: transport.name, transport: transport)
            }
        }
        let transport = UpstreamPool(members: members, configuration: configuration.pool, healthEventLoop: group.next(), logger: logger)
        let limiter: any QueryRateLimiter = configuration.rateLimit.map { TokenBucketRateLimiter(configuration: $0) }
            ?? UnlimitedQueryRateLimiter()
        let cache: any DNSResponseCache = configuration.cache.map { InMemoryDNSResponseCache(configuration: $0) } ?? NoOpDNSResponseCache()
        let handler = ForwardingQueryHandler(
            transport: transport, accessControl: configuration.accessControl, rateLimiter: limiter, cache: cache,
            queryTimeout: configuration.queryTimeout, logQueries: configuration.logQueries, logger: logger)
        let server = DNSProxyServer(configuration: configuration.server, handler: handler, eventLoopGroup: group, logger: logger)
        return ProxyServices(
            server: server, pool: transport, upstreams: members.map(\.transport), handler: handler, rateLimiter: configuration.rateLimit == nil ? nil : limiter,
            cache: cache)
    }
}
