import DoTCore
import Logging
import NIOConcurrencyHelpers

/// Builds the pool's members from the configuration, at start and at each reload, and knows which of
/// them a reload may keep: a member is kept while everything it was built from stays the same.
final class UpstreamMemberFactory: Sendable {
    private let metrics: DNSProxyMetrics
    private let logger: Logger
    /// The members built so far that are still in use, by what they were built from.
    private let built = NIOLockedValueBox([String: UpstreamPool.Member]())

    init(metrics: DNSProxyMetrics, logger: Logger) {
        self.metrics = metrics
        self.logger = logger
    }

    /// The members for `configuration`, in order: those built from the same settings before are
    /// reused (same transport, so the pool keeps their connections and health), the others new.
    /// Forgets the members that are not in the list.
    ///
    /// Loads trust roots, so it blocks briefly; call it off the event loops.
    func members(for configuration: ProxyConfiguration) throws -> [UpstreamPool.Member] {
        let previous = built.withLockedValue { $0 }
        var contexts: [TLSClientConfiguration: TLSClientContext] = [:]
        func context(for tls: TLSClientConfiguration) throws -> TLSClientContext {
            if let existing = contexts[tls] { return existing }
            let made = try TLSClientContext(configuration: tls, logger: logger)
            contexts[tls] = made
            return made
        }
        // Made on first use: the system resolver starts NIO's blocking thread pool (two threads), which
        // only host-name upstreams need.
        var resolver: (any UpstreamHostResolver)?
        var current: [String: UpstreamPool.Member] = [:]
        let members = try configuration.upstreams.map { upstream -> UpstreamPool.Member in
            let key = Self.key(of: upstream, in: configuration)
            let settings = configuration.upstreamSettings[upstream]
            if var member = previous[key] {
                current[key] = member
                member.timeout = settings?.timeout
                return member
            }
            let tls = try context(for: settings?.tls(from: configuration.tls) ?? configuration.tls)
            var member: UpstreamPool.Member
            switch upstream.target {
            case .address(let address):
                let transport = DoTUpstreamTransport(
                    configuration: .init(upstream: address, idleTimeout: configuration.idleTimeout),
                    tlsContext: tls,
                    name: settings?.name,
                    metrics: metrics,
                    logger: logger
                )
                member = UpstreamPool.Member(name: transport.name, transport: transport)
            case .hostname(let host, let port, let name):
                let hostResolver =
                    resolver
                    ?? (configuration.bootstrap.isEmpty
                        ? SystemHostResolver() : BootstrapHostResolver(servers: configuration.bootstrap))
                resolver = hostResolver
                let transport = HostnameUpstreamTransport(
                    host: host,
                    port: port,
                    authenticationName: name,
                    resolver: hostResolver,
                    tlsContext: tls,
                    configuration: .init(
                        upstream: UpstreamAddress(host: host, port: port),
                        idleTimeout: configuration.idleTimeout
                    ),
                    name: settings?.name,
                    metrics: metrics,
                    logger: logger
                )
                member = UpstreamPool.Member(name: transport.name, transport: transport)
            }
            current[key] = member
            member.timeout = settings?.timeout
            return member
        }
        built.withLockedValue { $0 = current }
        return members
    }

    /// Everything a member is built from, as text: the upstream, its name and TLS settings, the idle
    /// timeout and, for a host name, the servers that resolve it.
    static func key(of upstream: UpstreamArgument, in configuration: ProxyConfiguration) -> String {
        let settings = configuration.upstreamSettings[upstream]
        var key = "\(upstream) \(settings?.name ?? "") \(settings?.tls(from: configuration.tls) ?? configuration.tls)"
        key += " \(configuration.idleTimeout)"
        if case .hostname = upstream.target {
            key += " \(configuration.bootstrap.map(\.endpointDescription))"
        }
        return key
    }
}
