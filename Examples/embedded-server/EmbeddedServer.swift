import DoTCore
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle

/// A Swift service that embeds the proxy: `DNSProxyServer` runs next to the application's own
/// service in one `ServiceGroup`, every setting in code (no command line), and both stop together on
/// SIGINT or SIGTERM.
///
///     swift run embedded-server                                   # upstream 1.1.1.1 and 9.9.9.9
///     DOT_UPSTREAM=127.0.0.1:8853 DOT_NAME=dns.test DOT_CA=/tmp/rig/ca.pem DOT_PORT=5056 swift run embedded-server
///     dig @127.0.0.1 -p 5055 example.com
@main
enum EmbeddedServer {
    static func main() async throws {
        let logger = Logger(label: "embedded")
        let environment = Environment()
        let group = MultiThreadedEventLoopGroup.singleton

        // Upstreams: a pool of verified DoT resolvers with ordered failover.
        var tls = TLSClientConfiguration.makeStrict()
        if let ca = environment["DOT_CA"] { tls.trustRoots = .pemFile(ca) }
        tls.minimumVersion = .tls12
        let context = try TLSClientContext(configuration: tls, logger: logger)
        let addresses =
            environment.upstreams ?? [
                UpstreamAddress(host: "1.1.1.1", authenticationName: "cloudflare-dns.com"),
                UpstreamAddress(host: "9.9.9.9", authenticationName: "dns.quad9.net"),
            ]
        let transports = addresses.map {
            DoTUpstreamTransport(
                configuration: .init(upstream: $0, idleTimeout: .seconds(5)),
                tlsContext: context,
                logger: logger
            )
        }
        let pool = UpstreamPool(
            members: transports.map(UpstreamPool.Member.init),
            configuration: .init(policy: .sequential, maximumFailures: 2),
            healthEventLoop: group.next(),
            logger: logger
        )

        // The limiter, the cache and the listener, as this application wants them.
        let limiter = TokenBucketRateLimiter(
            configuration: .init(queriesPerSecond: 50, burst: 200, ipv4PrefixLength: 24, action: .slip)
        )
        let cache = InMemoryDNSResponseCache(
            configuration: .init(maximumEntries: 50_000, minimumTTL: 30, serveStale: true)
        )
        let handler = ForwardingQueryHandler(
            transport: pool,
            accessControl: AccessControlList(allowed: [IPNetwork("127.0.0.0/8")!, IPNetwork("::1/128")!]),
            rateLimiter: limiter,
            cache: cache,
            queryTimeout: .milliseconds(1500),
            logger: logger
        )
        let server = DNSProxyServer(
            configuration: .init(
                listenAddresses: [try SocketAddress(ipAddress: "127.0.0.1", port: environment.port ?? 5055)],
                maximumTCPConnections: 256
            ),
            handler: handler,
            eventLoopGroup: group,
            logger: logger
        )

        // The application's own service, sharing the group's lifetime.
        let reporter = StatisticsReporter(
            cache: cache,
            pool: pool,
            limiter: limiter,
            interval: .seconds(10),
            logger: logger
        )
        let services = ServiceGroup(
            configuration: .init(
                // The pool first: the group stops services in reverse, so the server drains its
                // queries while the pool still forwards them, then the pool closes its connections.
                services: [.init(service: pool), .init(service: server), .init(service: reporter)],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            )
        )
        try await services.run()
    }
}

/// The application's own service: logs what the proxy is doing every `interval`, until graceful
/// shutdown.
struct StatisticsReporter: Service {
    let cache: InMemoryDNSResponseCache
    let pool: UpstreamPool
    let limiter: TokenBucketRateLimiter
    let interval: Duration
    let logger: Logger

    func run() async throws {
        while !Task.isShuttingDownGracefully {
            // Sleeping ends early on shutdown, so the group stops at once.
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
            let cacheStatistics = cache.statistics
            let up = pool.statistics().filter(\.isUp).map(\.name)
            logger.info(
                "statistics",
                metadata: [
                    "cache_hits": "\(cacheStatistics.hits)", "cache_misses": "\(cacheStatistics.misses)",
                    "cache_entries": "\(cacheStatistics.entries)",
                    "upstreams_up": "\(up)",
                    "rate_limited":
                        "\(limiter.statistics.refused + limiter.statistics.dropped + limiter.statistics.slipped)",
                ]
            )
        }
    }
}

/// Settings a deployment may override without a command line.
struct Environment {
    private let values: [String: String]

    init() {
        var values: [String: String] = [:]
        for key in ["DOT_UPSTREAM", "DOT_NAME", "DOT_CA", "DOT_PORT"] {
            if let value = getenv(key) { values[key] = String(cString: value) }
        }
        self.values = values
    }

    subscript(key: String) -> String? { values[key] }

    /// `DOT_PORT`, the listening port, when set.
    var port: Int? { values["DOT_PORT"].flatMap { Int($0) } }

    /// `DOT_UPSTREAM=IP:PORT` with `DOT_NAME`, when set.
    var upstreams: [UpstreamAddress]? {
        guard let text = values["DOT_UPSTREAM"], let colon = text.lastIndex(of: ":"),
            let port = Int(text[text.index(after: colon)...])
        else {
            return nil
        }
        return [UpstreamAddress(host: String(text[..<colon]), port: port, authenticationName: values["DOT_NAME"])]
    }
}
