import DoTCore
import DoTRedisCache
import Logging
import NIOCore
import Prometheus
import ServiceLifecycle

/// Everything the command line decides, validated, ready to build the proxy from.
struct ProxyConfiguration: Sendable {
    var upstreams: [UpstreamArgument]
    /// Names and TLS settings of upstreams from the configuration file's `upstreams` section.
    var upstreamSettings: [UpstreamArgument: ConfigFile.Upstream] = [:]
    var pool: UpstreamPool.Configuration
    /// The option that chose `pool.policy`, to name it in the log.
    var upstreamPolicy = UpstreamPolicyArgument.leastOutstanding
    /// Plain DNS servers that resolve `tls://` upstream names; empty means the system resolver.
    var bootstrap: [SocketAddress]
    var tls: TLSClientConfiguration
    var server: DNSProxyServer.Configuration
    /// The TLS listener's certificate and key, with `--listen-tls`.
    var tlsListener: TLSListenerSettings? = nil
    var queryTimeout: TimeAmount
    /// The largest UDP reply, whatever the client's EDNS size.
    var maximumUDPReplySize = ForwardingQueryHandler.defaultMaximumUDPReplySize
    var idleTimeout: TimeAmount
    var accessControl: AccessControlList
    var rateLimit: TokenBucketRateLimiter.Configuration?
    var cache: InMemoryDNSResponseCache.Configuration?
    /// The shared second cache tier, with `--redis`.
    var redis: RedisSettings? = nil
    /// The filter lists and what a blocked query gets; no filter when `nil`.
    var filter: FilterSettings? = nil
    var logLevel: Logger.Level
    var logJSON: Bool
    var logQueries: Bool
    /// Where `/metrics`, `/health` and `/ready` are served; off when `nil`.
    var metricsListen: SocketAddress? = nil
    /// Event-loop threads; one per CPU core when `nil`.
    var threads: Int? = nil

    /// One line for the start-up log.
    var summary: String {
        var listeners = server.listenAddresses.map(\.endpointDescription).joined(separator: ",")
        if !server.tlsListenAddresses.isEmpty {
            listeners += " listen-tls=" + server.tlsListenAddresses.map(\.endpointDescription).joined(separator: ",")
        }
        let pins = tls.spkiPins.isEmpty ? "" : " pins=\(tls.spkiPins.count)"
        let upstreamList = upstreams.map(\.description).joined(separator: ",")
        return
            "listen=\(listeners) upstream=\(upstreamList) policy=\(upstreamPolicy.rawValue) max-fails=\(pool.maximumFailures) tls=\(tls.verification),min \(tls.minimumVersion),\(tls.trustRoots)\(pins) "
            + "timeout=\(queryTimeout) max-udp-size=\(maximumUDPReplySize) idle-timeout=\(idleTimeout) \(cacheSummary) \(redisSummary) allow=\(accessControl) "
            + rateLimitSummary + filterSummary
            + " threads=\(threads.map(String.init) ?? "default")"
    }

    private var cacheSummary: String {
        guard let cache else { return "cache=off" }
        return
            "cache=\(cache.maximumEntries) entries/\(cache.maximumBytes >> 20) MiB ttl=\(cache.minimumTTL)-\(cache.maximumTTL)s negative<=\(cache.maximumNegativeTTL)s"
    }

    private var redisSummary: String { redis.map { "redis=\($0)" } ?? "redis=off" }

    private var filterSummary: String {
        guard let filter else { return " filter=off" }
        return " filter=\(filter.blocklists.count) lists action=\(filter.action) ttl=\(filter.ttl)"
    }

    private var rateLimitSummary: String {
        guard let rateLimit else { return "rate-limit=off" }
        return
            "rate-limit=\(rateLimit.queriesPerSecond)/s burst=\(rateLimit.burst) per /\(rateLimit.ipv4PrefixLength) /\(rateLimit.ipv6PrefixLength) "
            + "action=\(rateLimit.action)"
    }
}

/// What `build` returns: the services to run, and the parts tests want to reach.
struct ProxyServices: Sendable {
    let server: DNSProxyServer
    /// The query path, whose admission policy a reload replaces.
    let handler: ForwardingQueryHandler
    /// The handles every component reports to.
    let metrics: DNSProxyMetrics
    /// Builds the pool's members, and knows which a reload may keep.
    let upstreamFactory: UpstreamMemberFactory
    /// Reads the filter's lists, and keeps them for a reload that cannot read one.
    let filterLoader: FilterListLoader
    /// The upstreams; ``UpstreamPool/members`` are those in use now (a reload changes them).
    let pool: UpstreamPool
    let cache: any DNSResponseCache
    /// The in-memory cache (alone, or the first tier under Redis), whose bounds a reload changes.
    let memoryCache: InMemoryDNSResponseCache?
    /// The second cache tier's client, with `--redis`.
    let redis: RedisClient?
    /// The Prometheus factory every component reports to, and its listener, with `--metrics-listen`.
    let metricsFactory: PrometheusMetricsFactory?
    let metricsServer: MetricsHTTPServer?

    /// The services to run in one group, in the order they start: the upstream pool (it starts
    /// resolving `tls://` names), the Redis client and the metrics listener if configured, the DNS
    /// server. A group stops them in reverse: the server drains its queries while the pool still
    /// forwards them, and `/ready` answers until the server is gone.
    var all: [any Service] {
        [pool] + (redis.map { [$0] } ?? []) + (metricsServer.map { [$0] } ?? []) + [server]
    }
}

enum ProxyBuilder {
    /// Builds the proxy from a configuration. Loads trust roots, so it blocks briefly; call it before
    /// serving, never on an event loop.
    static func build(
        _ configuration: ProxyConfiguration,
        group: any EventLoopGroup,
        logger: Logger
    ) throws -> ProxyServices {
        let metricsFactory = configuration.metricsListen.map { _ in makeMetricsFactory() }
        let metrics = metricsFactory.map { DNSProxyMetrics(factory: $0) } ?? DNSProxyMetrics()
        let upstreams = UpstreamMemberFactory(metrics: metrics, logger: logger)
        let members = try upstreams.members(for: configuration)
        let transport = UpstreamPool(
            members: members,
            configuration: configuration.pool,
            healthEventLoop: group.next(),
            metrics: metrics,
            logger: logger
        )
        let limiter: (any QueryRateLimiter)? = configuration.rateLimit.map {
            TokenBucketRateLimiter(configuration: $0, metrics: metrics)
        }
        let memory = configuration.cache.map { InMemoryDNSResponseCache(configuration: $0, metrics: metrics) }
        var redis: RedisClient?
        var cache: any DNSResponseCache = memory ?? NoOpDNSResponseCache()
        if let memory, let settings = configuration.redis {
            let redisMetrics = metricsFactory.map { RedisCacheMetrics(factory: $0) } ?? RedisCacheMetrics()
            let tlsContext =
                try settings.client.endpoint.usesTLS ? TLSClientContext(configuration: configuration.tls) : nil
            let client = try RedisClient(
                configuration: settings.client,
                eventLoopGroup: group,
                tlsContext: tlsContext,
                metrics: redisMetrics,
                logger: logger
            )
            cache = TieredDNSResponseCache(
                memory: memory,
                redis: client,
                keyPrefix: settings.keyPrefix,
                metrics: redisMetrics
            )
            redis = client
        }
        let filters = FilterListLoader(metrics: metrics, logger: logger)
        let filter = try configuration.filter.map { try filters.filter(for: $0) }
        let handler = ForwardingQueryHandler(
            transport: transport,
            accessControl: configuration.accessControl,
            rateLimiter: limiter,
            filter: filter,
            cache: cache,
            queryTimeout: configuration.queryTimeout,
            maximumUDPReplySize: configuration.maximumUDPReplySize,
            logQueries: configuration.logQueries,
            metrics: metrics,
            logger: logger
        )
        let server = DNSProxyServer(
            configuration: configuration.server,
            handler: handler,
            eventLoopGroup: group,
            tlsContext: try configuration.tlsListener.map { try $0.load(logger: logger) },
            metrics: metrics,
            logger: logger
        )
        var metricsServer: MetricsHTTPServer?
        if let address = configuration.metricsListen, let metricsFactory {
            metricsServer = MetricsHTTPServer(
                address: address,
                registry: metricsFactory.registry,
                group: group,
                logger: logger
            ) {
                transport.hasUsableUpstream
            }
        }
        return ProxyServices(
            server: server,
            handler: handler,
            metrics: metrics,
            upstreamFactory: upstreams,
            filterLoader: filters,
            pool: transport,
            cache: cache,
            memoryCache: memory,
            redis: redis,
            metricsFactory: metricsFactory,
            metricsServer: metricsServer
        )
    }

    /// A Prometheus factory with its own registry, and histogram buckets from 100 µs to 5 s for
    /// the two request-duration timers.
    static func makeMetricsFactory() -> PrometheusMetricsFactory {
        var factory = PrometheusMetricsFactory(registry: PrometheusCollectorRegistry())
        let buckets: [Duration] = [
            .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2.5),
            .milliseconds(5),
            .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250),
            .milliseconds(500),
            .seconds(1), .seconds(2.5), .seconds(5),
        ]
        factory.durationHistogramBuckets = [
            DNSProxyMetrics.Name.forwardedRequestDuration: buckets, DNSProxyMetrics.Name.upstreamDuration: buckets,
        ]
        return factory
    }
}
