import ArgumentParser
import DoTCore
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle

/// A DNS-over-TLS proxy that uses ``FixedLifetimeCache``, a cache written outside the library, in
/// place of `InMemoryDNSResponseCache`.
///
///     swift run custom-cache --upstream 1.1.1.1#cloudflare-dns.com
///     dig @127.0.0.1 -p 5054 example.com     # twice: the second answer comes from the cache
@main
struct CustomCacheProxy: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "custom-cache",
        abstract: "A DoT proxy with a cache written outside DoTCore."
    )

    @Option(help: "The DoT resolver: IP, IP:PORT or [IPv6]:PORT, optionally #auth-name.")
    var upstream: String = "1.1.1.1#cloudflare-dns.com"

    @Option(help: "A PEM file of CAs to trust instead of the system store.")
    var caFile: String?

    @Option(help: "The loopback port to listen on (UDP and TCP).")
    var port: Int = 5054

    @Option(help: "Seconds every answer is kept.")
    var lifetime: Int64 = 60

    func run() async throws {
        let logger = Logger(label: "custom-cache")
        var tls = TLSClientConfiguration.makeStrict()
        if let caFile { tls.trustRoots = .pemFile(caFile) }
        guard let address = UpstreamAddress(self.upstream) else {
            throw ValidationError(
                "--upstream: \(self.upstream) is not IP, IP:PORT or [IPv6]:PORT with an optional #name"
            )
        }
        let upstream = DoTUpstreamTransport(
            configuration: .init(upstream: address),
            tlsContext: try TLSClientContext(configuration: tls),
            logger: logger
        )
        let cache = FixedLifetimeCache(lifetime: .seconds(lifetime), capacity: 10_000)
        let handler = ForwardingQueryHandler(transport: upstream, cache: cache, logger: logger)
        let server = DNSProxyServer(
            configuration: .init(listenAddresses: [try SocketAddress(ipAddress: "127.0.0.1", port: port)]),
            handler: handler,
            eventLoopGroup: MultiThreadedEventLoopGroup.singleton,
            logger: logger
        )
        let group = ServiceGroup(
            configuration: .init(
                // The upstream first: the group stops services in reverse, so the server drains its
                // queries before the upstream's connections close.
                services: [.init(service: upstream), .init(service: server)],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            )
        )
        try await group.run()
        logger.info("stopped", metadata: ["cached": "\(cache.count)"])
    }
}
