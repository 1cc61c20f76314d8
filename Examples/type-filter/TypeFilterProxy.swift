import ArgumentParser
import DoTCore
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle

/// A DNS-over-TLS proxy whose filter, ``QueryTypeFilter``, is written outside the library: queries of
/// the types it is given are refused before the cache and the upstream.
///
///     swift run type-filter --upstream 1.1.1.1#cloudflare-dns.com --refuse ANY --refuse HTTPS
///     dig @127.0.0.1 -p 5057 example.com ANY     # REFUSED, with EDE 17 (Filtered)
@main
struct TypeFilterProxy: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "type-filter",
        abstract: "A DoT proxy with a query filter written outside DoTCore."
    )

    @Option(help: "The DoT resolver: IP, IP:PORT or [IPv6]:PORT, optionally #auth-name.")
    var upstream: String = "1.1.1.1#cloudflare-dns.com"

    @Option(help: "A PEM file of CAs to trust instead of the system store.")
    var caFile: String?

    @Option(help: "The loopback port to listen on (UDP and TCP).")
    var port: Int = 5057

    @Option(help: "A query type to refuse (repeatable).")
    var refuse: [String] = ["ANY"]

    func run() async throws {
        let logger = Logger(label: "type-filter")
        var tls = TLSClientConfiguration.makeStrict()
        if let caFile { tls.trustRoots = .pemFile(caFile) }
        guard let address = UpstreamAddress(self.upstream) else {
            throw ValidationError(
                "--upstream: \(self.upstream) is not IP, IP:PORT or [IPv6]:PORT with an optional #name"
            )
        }
        let types = try Set(
            refuse.map { name in
                guard let type = DNSRecordType(name: name) else {
                    throw ValidationError("--refuse: \(name) is not a type")
                }
                return type
            }
        )
        let upstream = DoTUpstreamTransport(
            configuration: .init(upstream: address),
            tlsContext: try TLSClientContext(configuration: tls),
            logger: logger
        )
        let handler = ForwardingQueryHandler(
            transport: upstream,
            filter: QueryTypeFilter(refused: types),
            logger: logger
        )
        let server = DNSProxyServer(
            configuration: .init(listenAddresses: [try SocketAddress(ipAddress: "127.0.0.1", port: port)]),
            handler: handler,
            eventLoopGroup: MultiThreadedEventLoopGroup.singleton,
            logger: logger
        )
        let group = ServiceGroup(
            configuration: .init(
                services: [.init(service: upstream), .init(service: server)],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            )
        )
        try await group.run()
    }
}
