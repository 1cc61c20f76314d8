import ArgumentParser
import DoTCore
import DoTRedisCache
import Logging
import Metrics
import NIOCore
import NIOPosix
import ServiceLifecycle

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// `dotproxy`: plain DNS over UDP and TCP in, DNS over TLS out.
struct DotProxyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dotproxy",
        abstract: "A DNS-over-TLS forwarding proxy.",
        discussion: """
            Listens for plain DNS on UDP and TCP and forwards each query over TLS (RFC 7858) to an upstream \
            resolver, verifying its certificate strictly. Every option can also be set with an environment \
            variable DOTPROXY_<NAME> (for example DOTPROXY_UPSTREAM=9.9.9.9), and in a configuration file \
            (--config; Docs/configuration.md): a flag wins over a variable, a variable over the file.
            """,
        version: "dotproxy \(DotProxyVersion.current), GnuTLS \(GnuTLSLibrary.version)",
        subcommands: [CheckConfigCommand.self]
    )

    @Option(
        name: .customLong("config"),
        help: "A YAML (or JSON) configuration file; check it with `dotproxy check-config PATH`."
    )
    var config: String?

    @Flag(
        name: .customLong("watch-config"),
        help: "Reload the --config file when it changes (a Kubernetes ConfigMap update), as SIGHUP does."
    )
    var watchConfig = false

    @Option(
        name: .customLong("upstream"),
        help:
            "Upstream DoT resolver (repeatable): IP, IP:PORT, [IPv6]:PORT or tls://HOSTNAME[:PORT], optionally #auth-name. Port 853 by default."
    )
    var upstreams: [UpstreamArgument] = []

    @Option(name: .customLong("upstream-policy"), help: "How queries are spread over upstreams.")
    var upstreamPolicy: UpstreamPolicyArgument = .leastOutstanding

    @Option(
        name: .customLong("max-fails"),
        parsing: .unconditional,
        help: "Consecutive errors that mark an upstream down; it is then probed with back-off until it answers."
    )
    var maxFails: Int = 3

    @Option(
        name: .customLong("failover-rcode"),
        help:
            "Reply code that sends a query on to the next upstream (repeatable), by name or number; none to disable. Default: SERVFAIL and REFUSED."
    )
    var failoverResponseCodes: [FailoverResponseCodeArgument] = []

    @Option(
        name: .customLong("health-check-interval"),
        parsing: .unconditional,
        help: "Seconds between active checks of every upstream; 0 checks only upstreams that failed."
    )
    var healthCheckInterval: Double = 0

    @Option(
        name: .customLong("health-check-name"),
        help: "The name a health probe asks for; any reply to it, whatever its code, shows the upstream is up."
    )
    var healthCheckName: String = "."

    @Option(name: .customLong("health-check-type"), help: "The type a health probe asks for, such as NS, A or SOA.")
    var healthCheckType: String = "NS"

    @Option(
        name: .customLong("bootstrap"),
        help:
            "Plain DNS server, IP or IP:PORT, that resolves tls:// upstream names (repeatable). Default: the system resolver."
    )
    var bootstrap: [String] = []

    @Option(
        name: .customLong("listen"),
        help: "Address to listen on, IP:PORT or [IPv6]:PORT (repeatable). Default 127.0.0.1:5053."
    )
    var listen: [ListenArgument] = []

    @Option(
        name: .customLong("listen-tls"),
        help:
            "Address to serve DNS over TLS on, IP:PORT or [IPv6]:PORT, usually port 853 (repeatable, off by default); needs --tls-cert and --tls-key too."
    )
    var listenTLS: [ListenArgument] = []

    @Option(
        name: .customLong("tls-cert"),
        help: "PEM certificate chain (leaf first, RSA or ECDSA) of the TLS listener; read again on reload."
    )
    var tlsCertificate: String?

    @Option(name: .customLong("tls-key"), help: "PEM private key of the TLS listener's certificate.")
    var tlsKey: String?

    @Option(
        name: .customLong("max-tcp-connections"),
        parsing: .unconditional,
        help: "Client TCP connections open at once."
    )
    var maxTCPConnections = 1024

    @Option(
        name: .customLong("max-tls-connections"),
        parsing: .unconditional,
        help: "Client DNS-over-TLS connections open at once, handshaking or not."
    )
    var maxTLSConnections = 1024

    @Option(
        name: .customLong("max-connections-per-client"),
        parsing: .unconditional,
        help: "TCP connections, and TLS connections, one client address (IPv6: one /64) may hold open."
    )
    var maxConnectionsPerClient = 16

    @Option(
        name: .customLong("max-new-connections-per-second"),
        parsing: .unconditional,
        help: "New TCP and TLS connections per second from one client address (twice that at once); 0 for no limit."
    )
    var maxNewConnectionsPerSecond: Double = 50

    @Option(name: .customLong("ca-file"), help: "PEM file of CAs to trust instead of the system store.")
    var caFile: String?

    @Option(name: .customLong("pin-sha256"), help: "Base64 SHA-256 SPKI pin the upstream must match (repeatable).")
    var pins: [String] = []

    @Option(name: .customLong("tls-min-version"), help: "Oldest TLS version to accept.")
    var tlsMinimumVersion: TLSVersionArgument = .tls12

    @Flag(
        name: .customLong("opportunistic-tls"),
        help: "Encrypt without verifying the upstream's certificate. Insecure against active attackers."
    )
    var opportunisticTLS = false

    @Option(
        name: .customLong("timeout"),
        parsing: .unconditional,
        help: "Seconds to wait for an upstream reply before answering SERVFAIL."
    )
    var timeout: Double = 2

    @Option(
        name: .customLong("idle-timeout"),
        parsing: .unconditional,
        help: "Seconds before an idle upstream connection is closed."
    )
    var idleTimeout: Double = 8

    @Option(
        name: .customLong("max-udp-size"),
        parsing: .unconditional,
        help:
            "Largest UDP reply in octets (512-4096), whatever size a client's EDNS asks for; larger replies are truncated so the client retries over TCP."
    )
    var maxUDPSize: Int = ForwardingQueryHandler.defaultMaximumUDPReplySize

    @Option(
        name: .customLong("cache-size"),
        parsing: .unconditional,
        help: "Replies to cache (entries); 0 disables the cache."
    )
    var cacheSize: Int = 10_000

    @Option(name: .customLong("cache-max-bytes"), parsing: .unconditional, help: "Reply octets the cache may hold.")
    var cacheMaxBytes: Int = 64 << 20

    @Option(
        name: .customLong("cache-min-ttl"),
        parsing: .unconditional,
        help: "Shortest time a positive reply is cached, in seconds."
    )
    var cacheMinTTL: Int = 0

    @Option(
        name: .customLong("cache-max-ttl"),
        parsing: .unconditional,
        help: "Longest time any reply is cached, in seconds."
    )
    var cacheMaxTTL: Int = 86_400

    @Option(
        name: .customLong("cache-max-negative-ttl"),
        parsing: .unconditional,
        help: "Longest time NXDOMAIN/NODATA is cached, in seconds."
    )
    var cacheMaxNegativeTTL: Int = 3_600

    @Flag(
        name: .customLong("serve-stale"),
        help:
            "Answer from expired cache entries (TTL 30) when the upstream fails or is slower than 1.8 s, for up to a day (RFC 8767)."
    )
    var serveStale = false

    @Flag(
        name: .customLong("prefetch"),
        help: "Refresh a cached reply in the background when it is asked for in the last tenth of its lifetime."
    )
    var prefetch = false

    @Option(
        name: .customLong("redis"),
        help: ArgumentHelp(
            "A Redis shared by replicas as a second cache tier: redis://[[user]:password@]host[:port][/db], or rediss:// for TLS.",
            discussion:
                "Asked after an in-memory miss, before the upstream. Prefer DOTPROXY_REDIS or the file's redis.url for a password: a command line is visible to every local user.",
            valueName: "url"
        )
    )
    var redis: String?

    @Option(
        name: .customLong("redis-timeout"),
        parsing: .unconditional,
        help: "How long a Redis lookup may take, in milliseconds, before it counts as a miss."
    )
    var redisTimeout: Double = 2

    @Option(
        name: .customLong("redis-key-prefix"),
        help: "What every Redis key starts with; replicas that share answers share a prefix."
    )
    var redisKeyPrefix: String = "dotproxy:"

    @Option(
        name: .customLong("rate-limit"),
        parsing: .unconditional,
        help: "Queries per second allowed per client prefix; 0 disables the limit."
    )
    var rateLimit: Double = 0

    @Option(
        name: .customLong("rate-limit-burst"),
        parsing: .unconditional,
        help: "Queries a client prefix may send at once (default: twice the rate)."
    )
    var rateLimitBurst: Double?

    @Option(
        name: .customLong("rate-limit-ipv4-prefix"),
        parsing: .unconditional,
        help: "IPv4 prefix length that counts as one client (1-32)."
    )
    var rateLimitIPv4Prefix: Int = 32

    @Option(
        name: .customLong("rate-limit-ipv6-prefix"),
        parsing: .unconditional,
        help: "IPv6 prefix length that counts as one client (1-128)."
    )
    var rateLimitIPv6Prefix: Int = 64

    @Option(
        name: .customLong("rate-limit-action"),
        help: "Over the limit: refuse (REFUSED), drop, or slip (UDP: every Nth gets TC, the rest dropped)."
    )
    var rateLimitAction: RateLimitActionArgument = .refuse

    @Option(
        name: .customLong("rate-limit-slip"),
        parsing: .unconditional,
        help: "With slip: one TC reply per this many limited UDP queries."
    )
    var rateLimitSlip: Int = 2

    @Option(
        name: .customLong("allow"),
        help:
            "Client network allowed to query, CIDR (repeatable). Default: loopback, RFC 1918, link-local, 100.64/10, fc00::/7."
    )
    var allow: [String] = []

    @Flag(name: .customLong("allow-any"), help: "Allow every client: an open resolver. Logs a warning.")
    var allowAny = false

    @Option(
        name: .customLong("blocklist"),
        help:
            "A list of domains to block, with their subdomains (repeatable): hosts file, one domain a line, or Adblock ||domain^ rules."
    )
    var blocklists: [String] = []

    @Option(
        name: .customLong("allowlist"),
        help: "A list of domains never to block, in the same formats (repeatable); an allow rule wins over a block."
    )
    var allowlists: [String] = []

    @Option(
        name: .customLong("local-records"),
        help:
            "A file of names answered locally, never forwarded: NAME TYPE VALUE lines (A, AAAA, CNAME, TXT, PTR), hosts lines, and zone NAME for local zones."
    )
    var localRecords: String?

    @Option(
        name: .customLong("block-action"),
        help: "What a blocked query gets: nxdomain, refused, null (0.0.0.0 and ::), or addresses, comma-separated."
    )
    var blockAction = BlockActionArgument(argument: "nxdomain")!

    @Option(
        name: .customLong("block-ttl"),
        parsing: .unconditional,
        help: "TTL in seconds of a blocked reply's records (0-86400)."
    )
    var blockTTL = Int(DomainListFilter.defaultTTL)

    @Option(name: .customLong("log-level"), help: "The least severe messages to log.")
    var logLevel: LogLevelArgument = .info

    @Option(name: .customLong("log-format"), help: "text, or json for one JSON object per line.")
    var logFormat: LogFormatArgument = .text

    @Option(
        name: .customLong("metrics-listen"),
        help:
            "Serve /metrics (Prometheus), /health and /ready over HTTP on IP:PORT, for example 127.0.0.1:9153. Off by default."
    )
    var metricsListen: ListenArgument?

    @Flag(name: .customLong("log-queries"), help: "Log every query's name and type (off by default, for privacy).")
    var logQueries = false

    @Option(
        name: .customLong("threads"),
        parsing: .unconditional,
        help:
            "Event-loop threads serving clients and upstream connections (1-256). Default: one per four CPU cores, at least one, at most 16; one serves about 200,000 cached or 70,000 forwarded queries a second. Raise it only when the load exceeds that and cores are free."
    )
    var threads: Int?

    static func main() async {
        let commandLine = Array(CommandLine.arguments.dropFirst())
        var file: ConfigFile?
        do {
            // Parsed on its own: through the root, the root's checks (an upstream is required) would run
            // on the root's empty options first.
            guard commandLine.first != CheckConfigCommand.configuration.commandName else {
                do {
                    let check = try CheckConfigCommand.parse(Array(commandLine.dropFirst()))
                    try await check.run()
                } catch {
                    CheckConfigCommand.exit(withError: error)
                }
                return
            }
            let arguments: [String]
            (arguments, file) = try resolveArguments(
                commandLine: commandLine,
                environment: ProcessInfo.processInfo.environment
            )
            let command = try parseAsRoot(arguments)
            guard let proxy = command as? DotProxyCommand else {
                var other = command
                try other.run()
                return
            }
            try proxy.startThreads()
            try await proxy.serve(
                file: file,
                reloadFrom: (commandLine, ProcessInfo.processInfo.environment)
            )
        } catch let error as ConfigFileError {
            StandardError.write("dotproxy: \(error.description.replacingOccurrences(of: "\n", with: "\ndotproxy: "))\n")
            exit(withError: ExitCode(ConfigFileError.exitCode))
        } catch {
            // A complaint about an option the file set is said of the file's key, at its line.
            if let file, let located = file.locate(message(for: error)) {
                StandardError.write("dotproxy: \(located)\n")
                exit(withError: ExitCode(ConfigFileError.exitCode))
            }
            exit(withError: error)
        }
    }

    /// The long names of the options and flags, read once: deriving them encodes and decodes the
    /// command's whole definition, and every start and reload needs them.
    static let optionNames = EnvironmentArguments.names(of: DotProxyCommand.self)

    /// The arguments to parse: the command line, then the options `DOTPROXY_*` variables set, then
    /// those the configuration file (`--config`) sets that neither sets; and the file, if there is one.
    ///
    /// - Throws: ``ConfigFileError`` when the file cannot be used; `ValidationError` for a variable
    ///   that is not a flag's on or off.
    static func resolveArguments(
        commandLine: [String],
        environment: [String: String]
    ) throws -> (arguments: [String], file: ConfigFile?) {
        let names = Self.optionNames
        var arguments = try EnvironmentArguments.merge(
            arguments: commandLine,
            environment: environment,
            options: names.options,
            flags: names.flags
        )
        guard let path = ConfigFile.path(in: arguments) else { return (arguments, nil) }
        let file = try ConfigFile.load(path: path)
        let given = arguments
        arguments += file.arguments { option in
            given.contains { $0 == "--\(option)" || $0.hasPrefix("--\(option)=") }
                || !(environment[EnvironmentArguments.variableName(option)] ?? "").isEmpty
        }
        return (arguments, file)
    }

    mutating func validate() throws {
        _ = try makeConfiguration()
    }

    /// Turns the options into a validated configuration; every problem names its option.
    func makeConfiguration() throws -> ProxyConfiguration {
        if watchConfig, config == nil { throw ValidationError("--watch-config: needs --config, the file to watch") }
        let pool = try makePoolConfiguration()
        let bootstrapServers = try bootstrap.map { text in
            guard let parsed = UpstreamArgument.parse(text), !text.contains("#"),
                let address = try? SocketAddress(
                    ipAddress: parsed.host,
                    port: text.hasSuffix(":\(parsed.port)") ? parsed.port : 53
                )
            else { throw ValidationError("--bootstrap: \(text) is not an IP address or IP:PORT") }
            return address
        }
        var tls = TLSClientConfiguration.makeStrict()
        if let caFile {
            guard FileManager.default.isReadableFile(atPath: caFile) else {
                throw ValidationError("--ca-file: cannot read \(caFile)")
            }
            tls.trustRoots = .pemFile(caFile)
        }
        for pin in pins {
            guard let parsed = SPKIPin(base64: pin) else {
                throw ValidationError("--pin-sha256: \(pin) is not a base64 SHA-256 digest (44 characters)")
            }
            tls.spkiPins.insert(parsed)
        }
        tls.minimumVersion = tlsMinimumVersion.version
        if opportunisticTLS {
            guard pins.isEmpty else {
                throw ValidationError("--opportunistic-tls: cannot be combined with --pin-sha256")
            }
            tls.verification = .opportunistic
        }
        if let threads, !(1...256).contains(threads) {
            throw ValidationError("--threads: \(threads) must be from 1 to 256")
        }
        guard timeout > 0, timeout <= 60 else {
            throw ValidationError("--timeout: \(timeout) must be above 0 and at most 60 seconds")
        }
        guard idleTimeout > 0, idleTimeout <= 3600 else {
            throw ValidationError("--idle-timeout: \(idleTimeout) must be above 0 and at most 3600 seconds")
        }
        var accessControl = AccessControlList.default
        if allowAny {
            accessControl = .everyone
        } else if !allow.isEmpty {
            accessControl = AccessControlList(
                allowed: try allow.map { text in
                    guard let network = IPNetwork(text) else {
                        throw ValidationError(
                            "--allow: \(text) is not a network in CIDR notation with zero host bits, such as 192.168.0.0/16"
                        )
                    }
                    return network
                }
            )
        }
        var rateLimiter: TokenBucketRateLimiter.Configuration?
        guard rateLimit >= 0, rateLimit.isFinite else {
            throw ValidationError("--rate-limit: \(rateLimit) must be 0 (off) or more")
        }
        // Checked even with the limiter off: a bad value is a mistake whether or not it is used yet.
        guard (1...32).contains(rateLimitIPv4Prefix) else {
            throw ValidationError("--rate-limit-ipv4-prefix: \(rateLimitIPv4Prefix) is not between 1 and 32")
        }
        guard (1...128).contains(rateLimitIPv6Prefix) else {
            throw ValidationError("--rate-limit-ipv6-prefix: \(rateLimitIPv6Prefix) is not between 1 and 128")
        }
        guard rateLimitSlip >= 1 else { throw ValidationError("--rate-limit-slip: \(rateLimitSlip) must be 1 or more") }
        if let burst = rateLimitBurst {
            guard burst >= 1, burst.isFinite else {
                throw ValidationError("--rate-limit-burst: \(burst) must be 1 or more")
            }
        }
        if rateLimit > 0 {
            rateLimiter = .init(
                queriesPerSecond: rateLimit,
                burst: rateLimitBurst,
                ipv4PrefixLength: rateLimitIPv4Prefix,
                ipv6PrefixLength: rateLimitIPv6Prefix,
                action: rateLimitAction.decision,
                slipInterval: rateLimitSlip
            )
        }
        guard (512...4096).contains(maxUDPSize) else {
            throw ValidationError("--max-udp-size: \(maxUDPSize) must be 512 to 4096 octets")
        }
        guard cacheSize >= 0 else { throw ValidationError("--cache-size: \(cacheSize) must be 0 (off) or more") }
        guard cacheMaxBytes >= 4096 else {
            throw ValidationError("--cache-max-bytes: \(cacheMaxBytes) must be at least 4096")
        }
        guard (0...604_800).contains(cacheMaxTTL) else {
            throw ValidationError("--cache-max-ttl: \(cacheMaxTTL) must be 0 to 604800 seconds")
        }
        guard (0...cacheMaxTTL).contains(cacheMinTTL) else {
            throw ValidationError("--cache-min-ttl: \(cacheMinTTL) must be 0 to --cache-max-ttl (\(cacheMaxTTL))")
        }
        guard (0...604_800).contains(cacheMaxNegativeTTL) else {
            throw ValidationError("--cache-max-negative-ttl: \(cacheMaxNegativeTTL) must be 0 to 604800 seconds")
        }
        guard (0...86_400).contains(blockTTL) else {
            throw ValidationError("--block-ttl: \(blockTTL) must be 0 to 86400 seconds")
        }
        for (option, paths) in [
            ("blocklist", blocklists), ("allowlist", allowlists), ("local-records", localRecords.map { [$0] } ?? []),
        ] {
            for path in paths where !FileManager.default.isReadableFile(atPath: path) {
                throw ValidationError("--\(option): cannot read \(path)")
            }
        }
        if blocklists.isEmpty, !allowlists.isEmpty {
            throw ValidationError("--allowlist: needs a --blocklist to make exceptions to")
        }
        let filter: FilterSettings? =
            blocklists.isEmpty && localRecords == nil
            ? nil
            : FilterSettings(
                blocklists: blocklists,
                allowlists: allowlists,
                action: blockAction.action,
                ttl: UInt32(blockTTL),
                localRecords: localRecords
            )
        let cache: InMemoryDNSResponseCache.Configuration? =
            cacheSize == 0
            ? nil
            : .init(
                maximumEntries: cacheSize,
                maximumBytes: cacheMaxBytes,
                minimumTTL: UInt32(cacheMinTTL),
                maximumTTL: UInt32(cacheMaxTTL),
                maximumNegativeTTL: UInt32(cacheMaxNegativeTTL),
                serveStale: serveStale,
                prefetch: prefetch
            )
        if cache == nil && (serveStale || prefetch) {
            throw ValidationError(
                "--\(serveStale ? "serve-stale" : "prefetch"): needs the cache (--cache-size above 0)"
            )
        }
        let redisSettings = try makeRedisSettings(cacheOn: cache != nil)
        var server = DNSProxyServer.Configuration()
        for (option, value) in [
            ("max-tcp-connections", maxTCPConnections), ("max-tls-connections", maxTLSConnections),
            ("max-connections-per-client", maxConnectionsPerClient),
        ] where !(1...1_000_000).contains(value) {
            throw ValidationError("--\(option): \(value) must be 1 to 1000000")
        }
        guard maxNewConnectionsPerSecond >= 0, maxNewConnectionsPerSecond.isFinite else {
            throw ValidationError(
                "--max-new-connections-per-second: \(maxNewConnectionsPerSecond) must be 0 (off) or more"
            )
        }
        server.maximumTCPConnections = maxTCPConnections
        server.maximumTLSConnections = maxTLSConnections
        server.maximumTCPConnectionsPerClient = maxConnectionsPerClient
        server.maximumNewTCPConnectionsPerSecondPerClient = maxNewConnectionsPerSecond
        func addresses(_ arguments: [ListenArgument], option: String) throws -> [SocketAddress] {
            try arguments.map { argument in
                do {
                    return try SocketAddress(ipAddress: argument.host, port: argument.port)
                } catch {
                    throw ValidationError("--\(option): \(argument.description) is not a usable address")
                }
            }
        }
        if !listen.isEmpty { server.listenAddresses = try addresses(listen, option: "listen") }
        server.tlsListenAddresses = try addresses(listenTLS, option: "listen-tls")
        let tlsListener = try makeTLSListenerSettings(plainListeners: server.listenAddresses)
        var metricsAddress: SocketAddress?
        if let metricsListen {
            guard let address = try? SocketAddress(ipAddress: metricsListen.host, port: metricsListen.port) else {
                throw ValidationError("--metrics-listen: \(metricsListen.description) is not a usable address")
            }
            guard !server.listenAddresses.contains(address), !server.tlsListenAddresses.contains(address) else {
                throw ValidationError("--metrics-listen: \(metricsListen.description) is also a DNS listener")
            }
            metricsAddress = address
        }
        return ProxyConfiguration(
            upstreams: upstreams,
            pool: pool,
            upstreamPolicy: upstreamPolicy,
            bootstrap: bootstrapServers,
            tls: tls,
            server: server,
            tlsListener: tlsListener,
            queryTimeout: .nanoseconds(Int64(timeout * 1e9)),
            maximumUDPReplySize: maxUDPSize,
            idleTimeout: .nanoseconds(Int64(idleTimeout * 1e9)),
            accessControl: accessControl,
            rateLimit: rateLimiter,
            cache: cache,
            redis: redisSettings,
            filter: filter,
            logLevel: logLevel.level,
            logJSON: logFormat == .json,
            logQueries: logQueries,
            metricsListen: metricsAddress,
            threads: threads
        )
    }

    /// The Redis tier's client settings, when `--redis` is given. Messages never repeat the URL, which
    /// may hold a password.
    private func makeRedisSettings(cacheOn: Bool) throws -> RedisSettings? {
        guard let redis else { return nil }
        guard cacheOn else { throw ValidationError("--redis: needs the cache (--cache-size above 0)") }
        let endpoint: RedisEndpoint
        do {
            endpoint = try RedisEndpoint(url: redis)
        } catch {
            throw ValidationError("--redis: \(error.message)")
        }
        guard redisTimeout > 0, redisTimeout <= 10_000 else {
            throw ValidationError("--redis-timeout: \(redisTimeout) must be above 0 and at most 10000 (ms)")
        }
        guard !redisKeyPrefix.isEmpty, redisKeyPrefix.utf8.count <= 64 else {
            throw ValidationError("--redis-key-prefix: must be 1 to 64 octets")
        }
        var client = RedisClient.Configuration(endpoint: endpoint)
        client.timeout = .nanoseconds(Int64(redisTimeout * 1e6))
        return RedisSettings(client: client, keyPrefix: redisKeyPrefix)
    }

    /// The TLS listener's certificate and key, checked for readability, when `--listen-tls` is given.
    private func makeTLSListenerSettings(plainListeners: [SocketAddress]) throws -> TLSListenerSettings? {
        guard !listenTLS.isEmpty else {
            if tlsCertificate != nil || tlsKey != nil {
                throw ValidationError("--\(tlsCertificate != nil ? "tls-cert" : "tls-key"): needs --listen-tls")
            }
            return nil
        }
        guard let tlsCertificate else {
            throw ValidationError("--listen-tls: needs --tls-cert, the certificate chain to serve")
        }
        guard let tlsKey else { throw ValidationError("--listen-tls: needs --tls-key, the certificate's private key") }
        for (option, path) in [("tls-cert", tlsCertificate), ("tls-key", tlsKey)]
        where !FileManager.default.isReadableFile(atPath: path) {
            throw ValidationError("--\(option): cannot read \(path)")
        }
        for argument in listenTLS
        where plainListeners.contains(where: { $0.port == argument.port && $0.ipAddress == argument.host }) {
            throw ValidationError("--listen-tls: \(argument.description) is also a plain DNS listener")
        }
        return TLSListenerSettings(certificateChainFile: tlsCertificate, privateKeyFile: tlsKey)
    }

    /// The upstream list and the pool's policy, failover and health settings.
    private func makePoolConfiguration() throws -> UpstreamPool.Configuration {
        guard !upstreams.isEmpty else {
            throw ValidationError("--upstream: give at least one upstream resolver, for example --upstream 1.1.1.1")
        }
        guard upstreams.count <= UpstreamPool.maximumMembers else {
            throw ValidationError(
                "--upstream: at most \(UpstreamPool.maximumMembers) upstreams, not \(upstreams.count)"
            )
        }
        if let repeated = upstreams.first(where: { upstream in upstreams.filter { $0 == upstream }.count > 1 }) {
            throw ValidationError("--upstream: \(repeated) is given twice")
        }
        guard (1...100).contains(maxFails) else { throw ValidationError("--max-fails: \(maxFails) must be 1 to 100") }
        guard healthCheckInterval == 0 || (1...3600).contains(healthCheckInterval) else {
            throw ValidationError(
                "--health-check-interval: \(healthCheckInterval) must be 0 (off) or 1 to 3600 seconds"
            )
        }
        var codes: Set<DNSResponseCode> = [.serverFailure, .refused]
        if !failoverResponseCodes.isEmpty { codes = Set(failoverResponseCodes.compactMap(\.code)) }
        let probeName: DNSName
        do {
            probeName = try DNSName(parsing: healthCheckName)
        } catch {
            throw ValidationError("--health-check-name: \(healthCheckName) is not a domain name: \(error)")
        }
        guard let probeType = DNSRecordType(name: healthCheckType) else {
            throw ValidationError(
                "--health-check-type: \(healthCheckType) is not a record type such as NS, A, SOA or TYPE65"
            )
        }
        return UpstreamPool.Configuration(
            policy: upstreamPolicy.policy,
            maximumFailures: maxFails,
            failoverResponseCodes: codes,
            probeName: probeName,
            probeType: probeType,
            healthCheckInterval: healthCheckInterval == 0 ? nil : .nanoseconds(Int64(healthCheckInterval * 1e9))
        )
    }

    /// Starts the threads the proxy runs on, before any other: the event loops, sized to the cores
    /// and checked against the task limit (``ThreadPlan``; exits 71 when they cannot fit), then runs
    /// Swift's tasks on those loops instead of a pool of their own (one thread per core on a large
    /// host), so the threads are the loops, the main thread and, for `tls://` names, one
    /// blocking-pool thread.
    func startThreads() throws {
        let plan = ThreadPlan(threads: threads, cores: System.coreCount)
        if let tasks = ThreadPlan.currentTaskLimit(),
            let problem = plan.problem(taskLimit: tasks.limit, running: tasks.running)
        {
            StandardError.write("dotproxy: \(problem)\n")
            throw ExitCode(71)
        }
        // Read by the singletons when they are first used: now.
        NIOSingletons.groupLoopCountSuggestion = plan.eventLoops
        NIOSingletons.blockingPoolThreadCountSuggestion = ThreadPlan.blockingPoolThreads
        NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
    }

    /// Sizes the client TCP connections to the descriptor limit, raised to the hard one first
    /// (``DescriptorBudget``), once the event loops are known.
    static func fitToProcessLimits(_ configuration: inout ProxyConfiguration, logger: Logger) throws {
        let plan = ThreadPlan(threads: configuration.threads, cores: System.coreCount)
        configuration.threads = plan.eventLoops
        let budget = DescriptorBudget(
            limit: DescriptorBudget.raiseLimit(),
            upstreams: configuration.upstreams.count,
            eventLoops: plan.eventLoops,
            listenAddresses: configuration.server.listenAddresses.count,
            tlsListenAddresses: configuration.server.tlsListenAddresses.count,
            connectionsPerUpstream: DoTUpstreamTransport.Configuration.defaultMaximumConnectionsPerEventLoop
        )
        let servesTLS = !configuration.server.tlsListenAddresses.isEmpty
        let configuredTCP = configuration.server.maximumTCPConnections
        let configuredTLS = servesTLS ? configuration.server.maximumTLSConnections : 0
        let cap = budget.clientConnections(configured: configuredTCP + configuredTLS)
        guard cap < configuredTCP + configuredTLS else { return }
        // Shared in proportion to what was configured.
        let tcp = max(16, cap * configuredTCP / (configuredTCP + configuredTLS))
        let tls = servesTLS ? max(16, cap - tcp) : configuration.server.maximumTLSConnections
        logger.notice(
            "fewer client connections than configured, to keep descriptors for upstream connections",
            metadata: [
                "descriptor_limit": .stringConvertible(budget.limit), "reserved": .stringConvertible(budget.reserve),
                "tcp_connections": .stringConvertible(tcp),
            ].merging(servesTLS ? ["tls_connections": .stringConvertible(tls)] : [:]) { $1 }
        )
        configuration.server.maximumTCPConnections = tcp
        configuration.server.maximumTLSConnections = tls
        configuration.server.maximumTCPConnectionsPerClient = min(
            configuration.server.maximumTCPConnectionsPerClient,
            min(tcp, tls)
        )
    }

    func run() async throws {
        try await serve(file: nil, reloadFrom: nil)
    }

    /// Runs the proxy until a signal stops it, with the per-upstream settings of `file`'s upstreams
    /// section when the upstreams came from it. SIGHUP reloads the file, combined with `reloadFrom`,
    /// the command line and environment of the start.
    func serve(file: ConfigFile?, reloadFrom: (commandLine: [String], environment: [String: String])?) async throws {
        // Until the signal service traps them, SIGHUP and SIGUSR1/2 would kill the process outright.
        for signal in OperatorSignalService.signals { _ = Glibc.signal(signal.rawValue, SIG_IGN) }
        var configuration = try makeConfiguration()
        file?.applyUpstreamSettings(to: &configuration)
        let level = LogLevelControl(configuration.logLevel)
        let json = configuration.logJSON
        LoggingSystem.bootstrap { label in
            var base: any LogHandler =
                json ? JSONLogHandler(label: label) : StreamLogHandler.standardError(label: label)
            base.logLevel = .trace
            return ControlledLogHandler(base: base, control: level)
        }
        let logger = Logger(label: "dotproxy")
        try Self.fitToProcessLimits(&configuration, logger: logger)
        let services = try ProxyBuilder.build(
            configuration,
            group: MultiThreadedEventLoopGroup.singleton,
            logger: logger
        )
        if let factory = services.metricsFactory { MetricsSystem.bootstrap(factory) }
        logger.info("starting: \(configuration.summary)")
        if configuration.accessControl.isOpen {
            logger.warning("--allow admits every client: this is an open resolver, usable for amplification attacks")
        }
        let reloader = reloadFrom.map { source in
            ConfigReloader(
                commandLine: source.commandLine,
                environment: source.environment,
                running: configuration,
                services: services,
                logLevel: level,
                logger: logger
            )
        }
        let signals = OperatorSignalService(logger: logger, reloader: reloader)
        var watchers: [ServiceGroupConfiguration.ServiceConfiguration] = []
        if watchConfig, let file, let reloader {
            watchers.append(.init(service: ConfigFileWatcher(path: file.path, reloader: reloader)))
        }
        let group = ServiceGroup(
            configuration: .init(
                services: services.all.map { .init(service: $0, successTerminationBehavior: .gracefullyShutdownGroup) }
                    + [.init(service: signals, successTerminationBehavior: .ignore)] + watchers,
                gracefulShutdownSignals: [.sigterm, .sigint, .sigquit],
                logger: logger
            )
        )
        do {
            try await group.run()
        } catch let error as IOError where error.errnoCode == EADDRINUSE || error.errnoCode == EACCES {
            let reason =
                error.errnoCode == EADDRINUSE
                ? "the address is already in use"
                : "permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
            let listeners = (configuration.server.listenAddresses + configuration.server.tlsListenAddresses)
                .map(\.endpointDescription).joined(separator: ", ")
            StandardError.write("dotproxy: cannot listen on \(listeners): \(reason)\n")
            throw ExitCode(71)
        }
    }
}
