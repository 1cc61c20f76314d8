import ArgumentParser
import DoTCore
import DoTCoreTesting
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing

@testable import DotProxyServer

@Suite struct CommandTests {
    func configuration(_ arguments: [String]) throws -> ProxyConfiguration {
        try DotProxyCommand.parse(arguments).makeConfiguration()
    }

    func expectRejected(
        _ arguments: [String],
        mentioning option: String,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        do {
            _ = try DotProxyCommand.parse(arguments)
            Issue.record("accepted \(arguments)", sourceLocation: sourceLocation)
        } catch {
            let message = DotProxyCommand.message(for: error)
            #expect(message.contains(option), "\(message)", sourceLocation: sourceLocation)
            #expect(DotProxyCommand.exitCode(for: error) == ExitCode(64), sourceLocation: sourceLocation)
        }
    }

    @Test func filterListsAreCheckedAndTheirActionRead() throws {
        let list = FileManager.default.temporaryDirectory.appendingPathComponent("dotproxy-list-\(UUID()).txt").path
        defer { try? FileManager.default.removeItem(atPath: list) }
        try "ads.example\n".write(toFile: list, atomically: true, encoding: .utf8)
        let base = ["--upstream", "1.1.1.1"]
        #expect(try configuration(base).filter == nil, "no filter by default")
        let filter = try #require(
            try configuration(
                base + ["--blocklist", list, "--block-action", "192.0.2.1,2001:db8::1", "--block-ttl", "5"]
            )
            .filter
        )
        #expect(filter.blocklists == [list] && filter.ttl == 5)
        #expect(filter.action == .addresses([IPv4Address(192, 0, 2, 1)], [IPv6Address("2001:db8::1")!]))
        #expect(
            try configuration(base + ["--blocklist", list, "--block-action", "NULL"]).filter?.action == .nullAddress
        )
        expectRejected(base + ["--blocklist", "/nonexistent/list"], mentioning: "--blocklist: cannot read")
        expectRejected(base + ["--allowlist", list], mentioning: "--allowlist: needs a --blocklist")
        expectRejected(base + ["--blocklist", list, "--block-action", "block"], mentioning: "--block-action")
        expectRejected(base + ["--blocklist", list, "--block-ttl", "-1"], mentioning: "--block-ttl")
    }

    @Test func defaultsAreSecure() throws {
        let configuration = try configuration(["--upstream", "1.1.1.1"])
        #expect(
            configuration.upstreams.map(\.address) == [
                UpstreamAddress(host: "1.1.1.1", port: 853, authenticationName: "cloudflare-dns.com")
            ]
        )
        #expect(configuration.pool.policy is LeastOutstandingSelectionPolicy && configuration.pool.maximumFailures == 3)
        #expect(
            configuration.pool.failoverResponseCodes == [.serverFailure, .refused]
                && configuration.pool.healthCheckInterval == nil
        )
        #expect(configuration.bootstrap.isEmpty)
        #expect(configuration.tls.verification == .strict && configuration.tls.trustRoots == .system)
        #expect(configuration.tls.minimumVersion == .tls12 && configuration.tls.spkiPins.isEmpty)
        #expect(configuration.server.listenAddresses == [try SocketAddress(ipAddress: "127.0.0.1", port: 5053)])
        #expect(configuration.queryTimeout == .seconds(2) && configuration.idleTimeout == .seconds(8))
        #expect(configuration.logLevel == .info && !configuration.logQueries)
        #expect(configuration.summary.contains("cloudflare-dns.com"))
    }

    @Test func everyOptionIsApplied() throws {
        let configuration = try configuration([
            "--upstream", "[2620:fe::fe]:8853#custom.example", "--listen", "127.0.0.2:53", "--listen", "[::1]:5353",
            "--ca-file", TestCertificates.caFile, "--pin-sha256", TestCertificates.serverSPKIPin, "--tls-min-version",
            "1.3",
            "--timeout", "1.5", "--idle-timeout", "4", "--log-level", "debug", "--log-queries",
        ])
        #expect(
            configuration.upstreams.map(\.address) == [
                UpstreamAddress(host: "2620:fe::fe", port: 8853, authenticationName: "custom.example")
            ]
        )
        #expect(configuration.server.listenAddresses.map { $0.port } == [53, 5353])
        #expect(configuration.tls.trustRoots == .pemFile(TestCertificates.caFile))
        #expect(configuration.tls.spkiPins == [SPKIPin(base64: TestCertificates.serverSPKIPin)!])
        #expect(configuration.tls.minimumVersion == .tls13)
        #expect(configuration.queryTimeout == .milliseconds(1500) && configuration.idleTimeout == .seconds(4))
        #expect(configuration.logLevel == .debug && configuration.logQueries)
        #expect(try self.configuration(["--upstream", "1.1.1.1", "--threads", "1"]).threads == 1)
        #expect(try self.configuration(["--upstream", "1.1.1.1"]).threads == nil, "one per core by default")
        let opportunistic = try self.configuration(["--upstream", "192.0.2.1", "--opportunistic-tls"])
        #expect(opportunistic.tls.verification == .opportunistic)
    }

    @Test(arguments: [
        ("1.1.1.1", "1.1.1.1", 853, "cloudflare-dns.com"),
        ("8.8.4.4:853", "8.8.4.4", 853, "dns.google"),
        ("9.9.9.9#dns.quad9.net", "9.9.9.9", 853, "dns.quad9.net"),
        ("2606:4700:4700::1111", "2606:4700:4700::1111", 853, "cloudflare-dns.com"),
        ("[2001:4860:4860::8888]:853", "2001:4860:4860::8888", 853, "dns.google"),
        ("192.0.2.1:8853#dns.example", "192.0.2.1", 8853, "dns.example"),
    ])
    func upstreamNotation(text: String, host: String, port: Int, name: String) {
        #expect(
            UpstreamArgument(argument: text)?.address
                == UpstreamAddress(host: host, port: port, authenticationName: name)
        )
    }

    @Test func anUnknownUpstreamHasNoNameAndIsVerifiedByAddress() {
        #expect(UpstreamArgument(argument: "192.0.2.7")?.address?.authenticationName == nil)
        #expect(UpstreamArgument(argument: "192.0.2.7")?.address?.verificationName == "192.0.2.7")
    }

    @Test func badValuesAreRejectedNamingTheOption() {
        expectRejected([], mentioning: "--upstream")
        expectRejected(["--upstream", "1.2.3"], mentioning: "--upstream")
        expectRejected(["--upstream", "1.1.1.1:99999"], mentioning: "--upstream")
        expectRejected(["--upstream", "dns.google"], mentioning: "--upstream")
        expectRejected(["--upstream", "1.1.1.1#"], mentioning: "--upstream")
        expectRejected(["--upstream", "1.1.1.1", "--upstream", "1.1.1.1"], mentioning: "--upstream")
        expectRejected(["--upstream", "tls://dns..quad9.net"], mentioning: "--upstream")
        expectRejected(["--upstream", "tls://dns.quad9.net:0"], mentioning: "--upstream")
        expectRejected(
            ["--upstream", "1.1.1.1", "--upstream-policy", "fastest-first"],
            mentioning: "--upstream-policy"
        )
        expectRejected(["--upstream", "1.1.1.1", "--max-fails", "0"], mentioning: "--max-fails")
        expectRejected(["--upstream", "1.1.1.1", "--failover-rcode", "NOERROR"], mentioning: "--failover-rcode")
        expectRejected(["--upstream", "1.1.1.1", "--failover-rcode", "bogus"], mentioning: "--failover-rcode")
        expectRejected(
            ["--upstream", "1.1.1.1", "--health-check-interval", "0.5"],
            mentioning: "--health-check-interval"
        )
        expectRejected(["--upstream", "1.1.1.1", "--bootstrap", "dns.google"], mentioning: "--bootstrap")
        expectRejected(["--upstream", "1.1.1.1", "--listen", "127.0.0.1"], mentioning: "--listen")
        expectRejected(["--upstream", "1.1.1.1", "--listen", "localhost:53"], mentioning: "--listen")
        expectRejected(["--upstream", "1.1.1.1", "--listen", "2001:db8::853"], mentioning: "--listen")
        expectRejected(["--upstream", "1.1.1.1", "--ca-file", "/nonexistent/ca.pem"], mentioning: "--ca-file")
        expectRejected(["--upstream", "1.1.1.1", "--pin-sha256", "not-base64"], mentioning: "--pin-sha256")
        expectRejected(["--upstream", "1.1.1.1", "--tls-min-version", "1.1"], mentioning: "--tls-min-version")
        expectRejected(["--upstream", "1.1.1.1", "--timeout", "0"], mentioning: "--timeout")
        expectRejected(["--upstream", "1.1.1.1", "--timeout=-3"], mentioning: "--timeout")
        // A negative number after the option is its value, and gets the option's own message.
        expectRejected(["--upstream", "1.1.1.1", "--timeout", "-1"], mentioning: "must be above 0")
        expectRejected(["--upstream", "1.1.1.1", "--cache-size", "-5"], mentioning: "--cache-size")
        // Rate-limit values are checked even while the limiter is off.
        expectRejected(["--upstream", "1.1.1.1", "--rate-limit-action", "block"], mentioning: "--rate-limit-action")
        expectRejected(
            ["--upstream", "1.1.1.1", "--rate-limit-ipv4-prefix", "40"],
            mentioning: "--rate-limit-ipv4-prefix"
        )
        expectRejected(["--upstream", "1.1.1.1", "--idle-timeout", "0"], mentioning: "--idle-timeout")
        expectRejected(["--upstream", "1.1.1.1", "--log-level", "loud"], mentioning: "--log-level")
        expectRejected(["--upstream", "1.1.1.1", "--threads", "0"], mentioning: "--threads")
        expectRejected(["--upstream", "1.1.1.1", "--threads", "257"], mentioning: "--threads")
        expectRejected(
            ["--upstream", "1.1.1.1", "--opportunistic-tls", "--pin-sha256", TestCertificates.serverSPKIPin],
            mentioning: "--opportunistic-tls"
        )
    }

    @Test func rateLimitAndAccessOptions() throws {
        let defaults = try configuration(["--upstream", "1.1.1.1"])
        #expect(defaults.rateLimit == nil && defaults.accessControl == .default)
        #expect(defaults.summary.contains("rate-limit=off"))

        let limited = try configuration([
            "--upstream", "1.1.1.1", "--rate-limit", "20", "--rate-limit-burst", "50", "--rate-limit-ipv4-prefix", "24",
            "--rate-limit-ipv6-prefix", "56", "--rate-limit-action", "slip", "--rate-limit-slip", "3",
            "--allow", "10.0.0.0/8", "--allow", "fd00::/8",
        ])
        let rate = try #require(limited.rateLimit)
        #expect(
            rate.queriesPerSecond == 20 && rate.burst == 50 && rate.ipv4PrefixLength == 24
                && rate.ipv6PrefixLength == 56
        )
        #expect(rate.action == .slip && rate.slipInterval == 3)
        #expect(
            limited.accessControl == AccessControlList(allowed: [IPNetwork("10.0.0.0/8")!, IPNetwork("fd00::/8")!])
        )
        #expect(try configuration(["--upstream", "1.1.1.1", "--rate-limit", "5"]).rateLimit?.burst == 10)

        let open = try configuration(["--upstream", "1.1.1.1", "--allow-any"])
        #expect(open.accessControl.isOpen)
        let services = try ProxyBuilder.build(
            limited,
            group: MultiThreadedEventLoopGroup.singleton,
            logger: .init(label: "test")
        )
        #expect(services.handler.admissionPolicy.rateLimiter is TokenBucketRateLimiter)
    }

    @Test func cacheOptions() throws {
        let defaults = try configuration(["--upstream", "1.1.1.1"])
        #expect(defaults.cache == InMemoryDNSResponseCache.Configuration())
        let tuned = try configuration([
            "--upstream", "1.1.1.1", "--cache-size", "500", "--cache-max-bytes", "1048576", "--cache-min-ttl", "30",
            "--cache-max-ttl", "3600", "--cache-max-negative-ttl", "60",
        ])
        #expect(
            tuned.cache
                == InMemoryDNSResponseCache.Configuration(
                    maximumEntries: 500,
                    maximumBytes: 1_048_576,
                    minimumTTL: 30,
                    maximumTTL: 3600,
                    maximumNegativeTTL: 60
                )
        )
        #expect(tuned.summary.contains("cache=500 entries"))
        let off = try configuration(["--upstream", "1.1.1.1", "--cache-size", "0"])
        #expect(off.cache == nil && off.summary.contains("cache=off"))
        let services = try ProxyBuilder.build(
            off,
            group: MultiThreadedEventLoopGroup.singleton,
            logger: .init(label: "test")
        )
        #expect(services.cache is NoOpDNSResponseCache)
        let stale = try configuration(["--upstream", "1.1.1.1", "--serve-stale", "--prefetch"])
        #expect(stale.cache?.serveStale == true && stale.cache?.prefetch == true)
        expectRejected(["--upstream", "1.1.1.1", "--cache-size", "0", "--serve-stale"], mentioning: "--serve-stale")
        expectRejected(["--upstream", "1.1.1.1", "--cache-size", "0", "--prefetch"], mentioning: "--prefetch")
        expectRejected(["--upstream", "1.1.1.1", "--cache-size=-1"], mentioning: "--cache-size")
        expectRejected(["--upstream", "1.1.1.1", "--cache-max-bytes", "10"], mentioning: "--cache-max-bytes")
        expectRejected(
            ["--upstream", "1.1.1.1", "--cache-min-ttl", "100", "--cache-max-ttl", "50"],
            mentioning: "--cache-min-ttl"
        )
        expectRejected(["--upstream", "1.1.1.1", "--cache-max-ttl", "9999999"], mentioning: "--cache-max-ttl")
        expectRejected(
            ["--upstream", "1.1.1.1", "--cache-max-negative-ttl=-5"],
            mentioning: "--cache-max-negative-ttl"
        )
    }

    @Test func jsonLogsAreOneObjectPerLineWithStableKeys() throws {
        #expect(try configuration(["--upstream", "1.1.1.1", "--log-format", "json"]).logJSON)
        #expect(try !configuration(["--upstream", "1.1.1.1"]).logJSON)
        expectRejected(["--upstream", "1.1.1.1", "--log-format", "xml"], mentioning: "--log-format")
        let lines = NIOLockedValueBox<[String]>([])
        var handler = JSONLogHandler(label: "dotproxy") { line in lines.withLockedValue { $0.append(line) } }
        handler.metadata["upstream"] = "1.1.1.1:853"
        let logger = Logger(label: "dotproxy", factory: { _ in handler })
        logger.info("listening", metadata: ["port": "5053"])
        logger.debug("not shown at info")
        let written = lines.withLockedValue { $0 }
        #expect(written.count == 1 && !written[0].contains("\n"))
        let object = try #require(try JSONSerialization.jsonObject(with: Data(written[0].utf8)) as? [String: String])
        #expect(object["level"] == "info" && object["label"] == "dotproxy" && object["message"] == "listening")
        #expect(object["port"] == "5053" && object["upstream"] == "1.1.1.1:853" && object["time"] != nil)
        // ISO 8601 in UTC with milliseconds.
        #expect(try #/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z/#.wholeMatch(in: object["time"] ?? "") != nil)
    }

    @Test func jsonLogsKeepNumbersBooleansAndListsAsJSON() throws {
        let lines = NIOLockedValueBox<[String]>([])
        let handler = JSONLogHandler(label: "t") { line in lines.withLockedValue { $0.append(line) } }
        Logger(label: "t", factory: { _ in handler }).notice(
            "fewer connections",
            metadata: [
                "limit": .stringConvertible(1024), "ratio": .stringConvertible(0.5),
                "resumed": .stringConvertible(true),
                "addresses": .array(["127.0.0.1:53", "[::1]:53"]), "text": "42",
            ]
        )
        let line = try #require(lines.withLockedValue { $0.first })
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(
            object["limit"] as? Int == 1024 && object["ratio"] as? Double == 0.5 && object["resumed"] as? Bool == true
        )
        #expect(object["addresses"] as? [String] == ["127.0.0.1:53", "[::1]:53"])
        #expect(object["text"] as? String == "42", "a string stays a string, even when it reads as a number")
        #expect(line.contains("\"limit\":1024") && line.contains("\"resumed\":true"))
    }

    @Test func versionNamesTheProxyAndGnuTLS() {
        let version = DotProxyCommand.configuration.version
        #expect(version.hasPrefix("dotproxy \(DotProxyVersion.current), GnuTLS 3."))
    }

    @Test func jsonLogsEscapeWhatJSONRequires() throws {
        let lines = NIOLockedValueBox<[String]>([])
        let handler = JSONLogHandler(label: "t") { line in lines.withLockedValue { $0.append(line) } }
        let awkward = "quote \" backslash \\ newline \n tab \t bell \u{07} é 🛰"
        Logger(label: "t", factory: { _ in handler }).error("\(awkward)", metadata: ["key \"x\"": "\(awkward)"])
        let line = try #require(lines.withLockedValue { $0.first })
        #expect(!line.contains("\n") && line.contains("\\u0007"))
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: String])
        #expect(object["message"] == awkward && object["key \"x\""] == awkward)
        #expect(Array(object.keys).sorted() == ["key \"x\"", "label", "level", "message", "time"])
    }

    @Test func badRateLimitValuesAreRejected() {
        expectRejected(["--upstream", "1.1.1.1", "--rate-limit=-1"], mentioning: "--rate-limit")
        expectRejected(
            ["--upstream", "1.1.1.1", "--rate-limit", "5", "--rate-limit-action", "ban"],
            mentioning: "--rate-limit-action"
        )
        expectRejected(
            ["--upstream", "1.1.1.1", "--rate-limit", "5", "--rate-limit-ipv4-prefix", "33"],
            mentioning: "--rate-limit-ipv4-prefix"
        )
        expectRejected(
            ["--upstream", "1.1.1.1", "--rate-limit", "5", "--rate-limit-ipv6-prefix", "0"],
            mentioning: "--rate-limit-ipv6-prefix"
        )
        expectRejected(
            ["--upstream", "1.1.1.1", "--rate-limit", "5", "--rate-limit-slip", "0"],
            mentioning: "--rate-limit-slip"
        )
        expectRejected(
            ["--upstream", "1.1.1.1", "--rate-limit", "5", "--rate-limit-burst", "0.5"],
            mentioning: "--rate-limit-burst"
        )
        expectRejected(["--upstream", "1.1.1.1", "--allow", "10.0.0.1/8"], mentioning: "--allow")
        expectRejected(["--upstream", "1.1.1.1", "--allow", "everyone"], mentioning: "--allow")
    }

    @Test func theTLSListenerNeedsACertificateAndKeyThatCanBeRead() throws {
        let base = ["--upstream", "1.1.1.1"]
        let pair = [
            "--tls-cert", TestCertificates.server.certificateFile, "--tls-key", TestCertificates.server.keyFile,
        ]
        expectRejected(base + ["--listen-tls", "127.0.0.1:8853"], mentioning: "--tls-cert")
        expectRejected(
            base + ["--listen-tls", "127.0.0.1:8853", "--tls-cert", TestCertificates.server.certificateFile],
            mentioning: "--tls-key"
        )
        expectRejected(base + pair, mentioning: "needs --listen-tls")
        expectRejected(
            base + [
                "--listen-tls", "127.0.0.1:8853", "--tls-cert", "/nonexistent.pem", "--tls-key",
                TestCertificates.server.keyFile,
            ],
            mentioning: "--tls-cert: cannot read"
        )
        expectRejected(base + ["--listen-tls", "127.0.0.1:5053"] + pair, mentioning: "also a plain DNS listener")
        expectRejected(base + ["--listen-tls", "localhost:853"] + pair, mentioning: "--listen-tls")
        let configuration = try DotProxyCommand.parse(base + ["--listen-tls", "[::1]:8853"] + pair).makeConfiguration()
        #expect(configuration.server.tlsListenAddresses == [try SocketAddress(ipAddress: "::1", port: 8853)])
        #expect(configuration.tlsListener?.certificateChainFile == TestCertificates.server.certificateFile)
        #expect(try DotProxyCommand.parse(base).makeConfiguration().server.tlsListenAddresses.isEmpty)
    }

    static let names = DotProxyCommand.optionNames

    @Test func everyOptionAndFlagHasItsVariable() {
        let help = DotProxyCommand.helpMessage(columns: 1_000)
        let documented = Set(
            help.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "," }).filter { $0.hasPrefix("--") }.map {
                String($0.dropFirst(2))
            }
        )
        #expect(Set(Self.names.options + Self.names.flags) == documented.subtracting(["help", "version"]))
        #expect(
            Self.names.flags.contains("serve-stale") && Self.names.options.contains("upstream")
                && !Self.names.options.contains("serve-stale")
        )
    }

    @Test func aFlagVariableThatIsNeitherOnNorOffIsAnError() {
        #expect(throws: ValidationError.self) {
            try EnvironmentArguments.merge(
                arguments: [],
                environment: ["DOTPROXY_SERVE_STALE": "maybe"],
                options: Self.names.options,
                flags: Self.names.flags
            )
        }
        #expect(
            (try? EnvironmentArguments.merge(
                arguments: [],
                environment: ["DOTPROXY_SERVE_STALE": "0", "DOTPROXY_PREFETCH": "YES"],
                options: [],
                flags: Self.names.flags
            )) == ["--prefetch"]
        )
    }

    @Test func environmentVariablesFillInAndFlagsWin() throws {
        let merged = try EnvironmentArguments.merge(
            arguments: ["--timeout", "3"],
            environment: [
                "DOTPROXY_UPSTREAM": "9.9.9.9", "DOTPROXY_TIMEOUT": "5",
                "DOTPROXY_LISTEN": "127.0.0.1:5301,127.0.0.1:5302",
                "DOTPROXY_LOG_QUERIES": "true", "DOTPROXY_OPPORTUNISTIC_TLS": "no",
            ],
            options: Self.names.options,
            flags: Self.names.flags
        )
        let configuration = try self.configuration(merged)
        #expect(configuration.upstreams.map(\.address?.host) == ["9.9.9.9"])
        #expect(configuration.queryTimeout == .seconds(3))
        #expect(configuration.server.listenAddresses.map { $0.port } == [5301, 5302])
        #expect(configuration.logQueries && configuration.tls.verification == .strict)
    }

    @Test func theBuildFunctionMakesTheServices() throws {
        let configuration = try configuration([
            "--upstream", "127.0.0.1:8853#dns.test", "--ca-file", TestCertificates.caFile,
        ])
        let services = try ProxyBuilder.build(
            configuration,
            group: MultiThreadedEventLoopGroup.singleton,
            logger: .init(label: "test")
        )
        #expect(services.pool.members.map(\.name) == ["127.0.0.1:8853#dns.test"])
        #expect(
            (services.pool.members.first?.transport as? DoTUpstreamTransport)?.configuration.upstream.authenticationName
                == "dns.test"
        )
        #expect(services.server.configuration.listenAddresses == configuration.server.listenAddresses)
        services.pool.stopHealthChecks()
    }

    @Test func severalUpstreamsHostnamesAndPoolOptions() throws {
        let configuration = try configuration([
            "--upstream", "1.1.1.1", "--upstream", "tls://dns.quad9.net", "--upstream",
            "tls://Resolver.Example:8853#auth.example",
            "--upstream", "tls://9.9.9.9", "--upstream-policy", "sequential", "--max-fails", "5", "--failover-rcode",
            "SERVFAIL",
            "--failover-rcode", "4", "--health-check-interval", "30", "--bootstrap", "192.0.2.53", "--bootstrap",
            "[2001:db8::53]:5353",
        ])
        #expect(
            configuration.upstreams.map(\.description) == [
                "1.1.1.1:853#cloudflare-dns.com", "tls://dns.quad9.net:853", "tls://resolver.example:8853#auth.example",
                "9.9.9.9:853#dns.quad9.net",
            ]
        )
        #expect(configuration.pool.policy is SequentialSelectionPolicy && configuration.pool.maximumFailures == 5)
        #expect(configuration.pool.failoverResponseCodes == [.serverFailure, .notImplemented])
        #expect(configuration.pool.healthCheckInterval == .seconds(30))
        #expect(
            configuration.bootstrap == [
                try SocketAddress(ipAddress: "192.0.2.53", port: 53),
                try SocketAddress(ipAddress: "2001:db8::53", port: 5353),
            ]
        )
        #expect(
            try self.configuration(["--upstream", "1.1.1.1", "--failover-rcode", "none"]).pool.failoverResponseCodes
                .isEmpty
        )
        for (name, type) in [
            ("round-robin", RoundRobinSelectionPolicy.self), ("random", RandomSelectionPolicy.self),
            ("fastest", FastestSelectionPolicy.self),
        ]
            as [(String, any UpstreamSelectionPolicy.Type)]
        {
            #expect(
                try Swift.type(
                    of: self.configuration(["--upstream", "1.1.1.1", "--upstream-policy", name]).pool.policy
                ) == type
            )
        }
        #expect(configuration.summary.contains("tls://dns.quad9.net:853"))

        let services = try ProxyBuilder.build(
            configuration,
            group: MultiThreadedEventLoopGroup.singleton,
            logger: .init(label: "test")
        )
        #expect(
            services.pool.members.map(\.name) == [
                "1.1.1.1:853#cloudflare-dns.com", "tls://dns.quad9.net:853", "tls://resolver.example:8853#auth.example",
                "9.9.9.9:853#dns.quad9.net",
            ]
        )
        // Building sends nothing: names are resolved only when the command runs.
        #expect((services.pool.members[1].transport as? HostnameUpstreamTransport)?.lookupCount == 0)
        services.pool.stopHealthChecks()
    }
}
