import CoreMetrics
import DoTCore
import Logging
import NIOCore
import NIOPosix

/// Applies the configuration file again to the running proxy, on SIGHUP (and, with `--watch-config`,
/// when the file changes).
///
/// A reload is all or nothing: the command line and the environment of the start are combined with
/// the file as it is now, exactly as at start; a file that fails any check changes nothing, its
/// problems are logged with their lines, and `dotproxy_config_reloads_total{result="failure"}`
/// counts it. Otherwise each part that changed is applied and logged; a part that only a restart can
/// change (listen addresses, threads…) is logged as such and left as it runs. The cache is never
/// flushed, and queries in flight finish under the settings they started with.
actor ConfigReloader {
    private let commandLine: [String]
    private let environment: [String: String]
    private let services: ProxyServices
    private let logLevel: LogLevelControl
    private let logger: Logger
    private let succeeded: Counter
    private let failed: Counter
    /// The configuration as it runs: what the last start or reload applied.
    private(set) var running: ProxyConfiguration

    init(
        commandLine: [String],
        environment: [String: String],
        running: ProxyConfiguration,
        services: ProxyServices,
        logLevel: LogLevelControl,
        logger: Logger
    ) {
        self.commandLine = commandLine
        self.environment = environment
        self.running = running
        self.services = services
        self.logLevel = logLevel
        self.logger = logger
        self.succeeded = Counter(label: DNSProxyMetrics.Name.configReloads, dimensions: [("result", "success")])
        self.failed = Counter(label: DNSProxyMetrics.Name.configReloads, dimensions: [("result", "failure")])
    }

    /// What a reload did.
    enum Outcome: Equatable {
        /// The file could not be used; nothing changed.
        case failed(String)
        /// Applied: the parts that changed, and those left for a restart.
        case applied(changed: [String], needRestart: [String])
        /// Nothing to read: the proxy runs without `--config`.
        case noFile
    }

    /// Reads the file again and applies what changed.
    @discardableResult
    func reload() async -> Outcome {
        let next: ProxyConfiguration
        do {
            let (arguments, file) = try DotProxyCommand.resolveArguments(
                commandLine: commandLine,
                environment: environment
            )
            guard let file else {
                logger.notice("nothing to reload: dotproxy runs without --config")
                return .noFile
            }
            do {
                var configuration = try DotProxyCommand.parse(arguments).makeConfiguration()
                file.applyUpstreamSettings(to: &configuration)
                next = configuration
            } catch {
                let message = DotProxyCommand.message(for: error)
                throw file.locate(message) ?? ConfigFileError(path: file.path, message)
            }
        } catch {
            failed.increment()
            let reason = "\(error)"
            for line in reason.split(separator: "\n") {
                logger.error("configuration reload failed, the running configuration is kept: \(line)")
            }
            return .failed(reason)
        }
        let outcome: Outcome
        do {
            outcome = try await apply(next)
        } catch {
            failed.increment()
            logger.error("configuration reload failed, the running configuration is kept: \(error)")
            return .failed("\(error)")
        }
        succeeded.increment()
        if case .applied(let changed, let needRestart) = outcome {
            logger.notice(
                "configuration reloaded",
                metadata: [
                    "changed": .array(changed.map { .string($0) }),
                    "needs_restart": .array(needRestart.map { .string($0) }),
                ]
            )
        }
        return outcome
    }

    /// Applies the parts of `next` that differ from the running configuration and can change while
    /// serving; returns what changed and what needs a restart.
    private func apply(_ next: ProxyConfiguration) async throws -> Outcome {
        var changed: [String] = []
        var needRestart: [String] = []
        let before = Self.aspects(of: running)
        let after = Self.aspects(of: next)
        // The cache's bounds and policy change in place; turning it on or off needs a restart.
        let cacheOnOff = (running.cache == nil) != (next.cache == nil)
        // So does the TLS listener's pair; starting or stopping the listener is a change of `listen-tls`.
        let tlsOnOff = (running.tlsListener == nil) != (next.tlsListener == nil)
        for (name, value) in after where before[name] != value {
            if Self.reloadable.contains(name), !(name == "cache" && cacheOnOff), !(name == "tls-listener" && tlsOnOff) {
                changed.append(name)
            } else {
                needRestart.append(name)
            }
        }
        // The lists are read again at every reload (their files may change under the same names), and
        // the new filter is built aside, before anything changes: a list that was never readable fails
        // the reload whole.
        // Reading a list of a million names, or a trust store, takes a CPU for a while: on the blocking
        // pool, not on an event loop (Swift's tasks run on the loops), which would stall its queries.
        let loader = services.filterLoader
        let filter = try await NIOThreadPool.singleton.runIfActive {
            try next.filter.map { try loader.filter(for: $0) }
        }
        // The TLS listener's pair is read again too (a renewed certificate keeps its file names): a pair
        // that cannot be used fails the reload, and the listener keeps the one it has.
        let tlsContext: TLSServerContext?
        if running.tlsListener != nil, let settings = next.tlsListener {
            let logger = self.logger
            tlsContext = try await NIOThreadPool.singleton.runIfActive { try settings.load(logger: logger) }
        } else {
            tlsContext = nil
        }
        if !Self.upstreamAspects.isDisjoint(with: changed) {
            // Built first: a member that cannot be built (an unreadable CA file) fails the reload
            // before anything changed.
            var built = next
            built.bootstrap = running.bootstrap
            built.idleTimeout = running.idleTimeout
            let upstreams = built
            let factory = services.upstreamFactory
            let members = try await NIOThreadPool.singleton.runIfActive { try factory.members(for: upstreams) }
            let removed = services.pool.update(members: members, configuration: next.pool)
            running.upstreams = next.upstreams
            running.upstreamSettings = next.upstreamSettings
            running.tls = next.tls
            running.pool = next.pool
            running.upstreamPolicy = next.upstreamPolicy
            retire(removed, after: running.queryTimeout)
        }
        if changed.contains("access") || changed.contains("rate-limit") {
            var policy = services.handler.admissionPolicy
            policy.accessControl = next.accessControl
            if changed.contains("rate-limit") {
                policy.rateLimiter = next.rateLimit.map {
                    TokenBucketRateLimiter(configuration: $0, metrics: services.metrics)
                }
                running.rateLimit = next.rateLimit
            }
            services.handler.updateAdmission(policy)
            running.accessControl = next.accessControl
        }
        if changed.contains("cache"), let cache = services.memoryCache, let settings = next.cache {
            cache.update(configuration: settings)
            running.cache = next.cache
        }
        if next.filter != nil || running.filter != nil {
            services.handler.updateFilter(filter)
            if !changed.contains("filter") { changed.append("filter") }
            running.filter = next.filter
        }
        if let tlsContext, let settings = next.tlsListener {
            services.server.replaceTLSContext(tlsContext)
            if !changed.contains("tls-listener") { changed.append("tls-listener") }
            running.tlsListener = settings
        }
        if changed.contains("log.level") {
            logLevel.level = next.logLevel
            running.logLevel = next.logLevel
        }
        return .applied(changed: changed.sorted(), needRestart: needRestart.sorted())
    }

    /// Closes the connections of members that left the pool, once the queries sent to them have had
    /// their deadline to finish.
    private nonisolated func retire(_ members: [UpstreamPool.Member], after grace: TimeAmount) {
        guard !members.isEmpty else { return }
        Task {
            try? await Task.sleep(for: .nanoseconds(grace.nanoseconds) + .seconds(1))
            for member in members { await member.transport.shutdown() }
        }
    }

    /// The parts a reload applies while the proxy serves.
    static let reloadable: Set<String> = Set(["access", "rate-limit", "log.level", "cache", "filter", "tls-listener"])
        .union(upstreamAspects)

    /// The parts that change the upstream pool: its members or its configuration.
    static let upstreamAspects: Set<String> = ["upstreams", "tls", "upstream-policy", "failover", "health-check"]

    /// The configuration as named parts, each as text to compare.
    static func aspects(of configuration: ProxyConfiguration) -> [String: String] {
        let upstreams = configuration.upstreams.map { upstream in
            let settings = configuration.upstreamSettings[upstream]
            return
                "\(upstream)=\(settings.map { "\($0.name) \($0.tls(from: configuration.tls)) \(String(describing: $0.timeout))" } ?? "")"
        }
        let pool = configuration.pool
        return [
            "listen": configuration.server.listenAddresses.map(\.endpointDescription).joined(separator: ","),
            "listen-tls": configuration.server.tlsListenAddresses.map(\.endpointDescription).joined(separator: ","),
            "limits": [
                configuration.server.maximumTCPConnections, configuration.server.maximumTLSConnections,
                configuration.server.maximumTCPConnectionsPerClient,
            ].map(String.init).joined(separator: ",")
                + " \(configuration.server.maximumNewTCPConnectionsPerSecondPerClient)",
            "tls-listener": configuration.tlsListener.map(\.description) ?? "off",
            "threads": "\(ThreadPlan(threads: configuration.threads, cores: System.coreCount).eventLoops)",
            "metrics.listen": configuration.metricsListen?.endpointDescription ?? "off",
            "log.format": configuration.logJSON ? "json" : "text",
            "log.queries": "\(configuration.logQueries)",
            "log.level": "\(configuration.logLevel)",
            "timeout": "\(configuration.queryTimeout)",
            "idle-timeout": "\(configuration.idleTimeout)",
            "max-udp-size": "\(configuration.maximumUDPReplySize)",
            "bootstrap": configuration.bootstrap.map(\.endpointDescription).joined(separator: ","),
            "upstreams": upstreams.joined(separator: ","),
            "tls": "\(configuration.tls)",
            "upstream-policy": configuration.upstreamPolicy.rawValue,
            "failover": "\(pool.maximumFailures) \(pool.failoverResponseCodes.map(\.rawValue).sorted())",
            "health-check": "\(pool.probeName) \(pool.probeType) \(String(describing: pool.healthCheckInterval))",
            "access": "\(configuration.accessControl)",
            "rate-limit": "\(String(describing: configuration.rateLimit))",
            "cache": "\(String(describing: configuration.cache))",
            "redis": configuration.redis.map { "\($0) \($0.client.hashValue)" } ?? "off",
            "filter": "\(String(describing: configuration.filter))",
        ]
    }
}
