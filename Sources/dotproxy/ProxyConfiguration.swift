import DoTCore
import Logging
import NIOCore

/// Everything the command line decides, validated, ready to build the proxy from.
struct ProxyConfiguration: Sendable {
    var upstream: UpstreamAddress
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
        return "listen=\(listeners) upstream=\(upstream) tls=\(tls.verification),min \(tls.minimumVersion),\(tls.trustRoots)\(pins) "
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
    let transport: DoTUpstreamTransport
    let handler: ForwardingQueryHandler
    let rateLimiter: (any QueryRateLimiter)?
    let cache: any DNSResponseCache
}

enum ProxyBuilder {
    /// Builds the proxy from a configuration. Loads trust roots, so it blocks briefly; call it before
    /// serving, never on an event loop.
    static func build(_ configuration: ProxyConfiguration, group: any EventLoopGroup, logger: Logger) throws -> ProxyServices {
        let context = try TLSClientContext(configuration: configuration.tls, logger: logger)
        let transport = DoTUpstreamTransport(
            configuration: .init(upstream: configuration.upstream, idleTimeout: configuration.idleTimeout),
            tlsContext: context, logger: logger)
        let limiter: any QueryRateLimiter = configuration.rateLimit.map { TokenBucketRateLimiter(configuration: $0) }
            ?? UnlimitedQueryRateLimiter()
        let cache: any DNSResponseCache = configuration.cache.map { InMemoryDNSResponseCache(configuration: $0) } ?? NoOpDNSResponseCache()
        let handler = ForwardingQueryHandler(
            transport: transport, accessControl: configuration.accessControl, rateLimiter: limiter, cache: cache,
            queryTimeout: configuration.queryTimeout, logQueries: configuration.logQueries, logger: logger)
        let server = DNSProxyServer(configuration: configuration.server, handler: handler, eventLoopGroup: group, logger: logger)
        return ProxyServices(
            server: server, transport: transport, handler: handler, rateLimiter: configuration.rateLimit == nil ? nil : limiter,
            cache: cache)
    }
}
