import ArgumentParser
import DoTCore
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle

/// A Swift service that embeds the proxy: `DNSProxyServer` runs next to the application's own
/// service in one `ServiceGroup`, with the policy (failover, limits, cache) set in code as an
/// application would, and all stop together on SIGINT or SIGTERM.
///
///     swift run embedded-server                                   # upstreams 1.1.1.1 and 9.9.9.9
///     swift run embedded-server --upstream 127.0.0.1:8853#dns.test --ca-file /tmp/rig/ca.pem --port 5056
///     dig @127.0.0.1 -p 5055 example.com
@main
struct EmbeddedServer: AsyncParsableCommand {
    @Option(help: "A DoT resolver (repeatable): IP, IP:PORT or [IPv6]:PORT, optionally #auth-name.")
    var upstream: [String] = ["1.1.1.1#cloudflare-dns.com", "9.9.9.9#dns.quad9.net"]

    @Option(help: "A PEM file of CAs to trust instead of the system store.")
    var caFile: String?

    @Option(help: "The loopback port to listen on (UDP and TCP).")
    var port: Int = 5055

    func run() async throws {
        let logger = Logger(label: "embedded")
        let group = MultiThreadedEventLoopGroup.singleton

        // Upstreams: a pool of verified DoT resolvers with ordered failover.
        var tls = TLSClientConfiguration.makeStrict()
        if let caFile { tls.trustRoots = .pemFile(caFile) }
        tls.minimumVersion = .tls12
        let context = try TLSClientContext(configuration: tls, logger: logger)
        let addresses = try upstream.map { text in
            guard let address = UpstreamAddress(text) else {
                throw ValidationError("--upstream: \(text) is not IP, IP:PORT or [IPv6]:PORT with an optional #name")
            }
            return address
        }
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
                listenAddresses: [try SocketAddress(ipAddress: "127.0.0.1", port: port)],
                maximumTCPConnections: 256
            ),
            handler: handler,
            eventLoopGroup: group,
            logger: logger
        )

        // The application's own service, sharing the group's lifetime.
        let reporter = StateReporter(
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

/// The application's own service: logs the proxy's state every `interval`, until graceful shutdown.
struct StateReporter: Service {
    let cache: InMemoryDNSResponseCache
    let pool: UpstreamPool
    let limiter: TokenBucketRateLimiter
    let interval: Duration
    let logger: Logger

    func run() async throws {
        while !Task.isShuttingDownGracefully {
            // Sleeping ends early on shutdown, so the group stops at once.
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
            // Counters (hits, refusals, …) go to the metrics backend the application bootstraps; the
            // state is read here.
            logger.info(
                "proxy state",
                metadata: [
                    "cache_entries": "\(cache.count)", "cache_bytes": "\(cache.bytes)",
                    "upstreams_up": "\(pool.status().filter(\.isUp).map(\.name))",
                    "clients_tracked": "\(limiter.trackedPrefixes)",
                ]
            )
        }
    }
}
