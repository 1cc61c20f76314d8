import DoTCore
import DoTCoreTesting
import DoTRedisCache
import Foundation
import Logging
import NIOPosix
import Testing

@testable import DotProxyServer

/// A reload applies what changed in the file, all or nothing, to the running proxy.
@Suite struct ConfigReloaderTests {
    /// A proxy built (not started) from the file at `path`, and its reloader.
    func start(_ path: String, level: LogLevelControl) async throws -> (ConfigReloader, ProxyServices) {
        let commandLine = ["--config", path]
        let (arguments, file) = try DotProxyCommand.resolveArguments(commandLine: commandLine, environment: [:])
        var configuration = try DotProxyCommand.parse(arguments).makeConfiguration()
        file?.applyUpstreamSettings(to: &configuration)
        let services = try ProxyBuilder.build(
            configuration,
            group: MultiThreadedEventLoopGroup.singleton,
            logger: Logger(label: "test")
        )
        let reloader = ConfigReloader(
            commandLine: commandLine,
            environment: [:],
            running: configuration,
            services: services,
            logLevel: level,
            logger: Logger(label: "test")
        )
        return (reloader, services)
    }

    @Test func withRedisTheMemoryTierStillReloadsAndRedisNeedsARestartAndThePasswordStaysHidden() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("dotproxy-reload-\(UUID())")
        defer { try? FileManager.default.removeItem(at: directory) }
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let path = directory.appendingPathComponent("dotproxy.yaml").path
        let base = "upstreams: {one: {address: 192.0.2.1}}\nlisten: 127.0.0.1:5353\n"
        try (base + "redis: {url: \"redis://:pa55word@127.0.0.1:6390/1\", timeout: 3}\n")
            .write(toFile: path, atomically: true, encoding: .utf8)
        let (reloader, services) = try await start(path, level: LogLevelControl(.info))
        #expect(services.cache is TieredDNSResponseCache)
        #expect(services.redis?.configuration.timeout == .milliseconds(3))
        try (base + "redis: {url: \"redis://:pa55word@127.0.0.1:6390/1\", timeout: 3}\ncache: {size: 200}\n")
            .write(toFile: path, atomically: true, encoding: .utf8)
        #expect(await reloader.reload() == .applied(changed: ["cache"], needRestart: []))
        #expect(services.memoryCache?.configuration.maximumEntries == 200)
        try (base + "redis: {url: \"redis://:other@127.0.0.1:6390/1\", timeout: 3}\ncache: {size: 200}\n")
            .write(toFile: path, atomically: true, encoding: .utf8)
        #expect(await reloader.reload() == .applied(changed: [], needRestart: ["redis"]))

        let (arguments, _) = try DotProxyCommand.resolveArguments(
            commandLine: ["--config", path],
            environment: [:]
        )
        let summary = try DotProxyCommand.parse(arguments).makeConfiguration().summary
        #expect(summary.contains("redis=redis://:***@127.0.0.1:6390/1"))
        #expect(!summary.contains("other"))
        #expect(throws: (any Error).self) {
            try DotProxyCommand.parse(["--upstream", "192.0.2.1", "--redis", "redis://:secret@h:nope"])
                .makeConfiguration()
        }
        do {
            _ = try DotProxyCommand.parse(["--upstream", "192.0.2.1", "--redis", "redis://:secret@h:nope"])
                .makeConfiguration()
        } catch {
            #expect(!"\(error)".contains("secret"))
        }
    }

    @Test func whatChangedIsAppliedAndABadFileChangesNothing() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("dotproxy-reload-\(UUID())")
        defer { try? FileManager.default.removeItem(at: directory) }
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let path = directory.appendingPathComponent("dotproxy.yaml").path
        let base = "upstreams: {one: {address: 192.0.2.1}}\nlisten: 127.0.0.1:5353\n"
        try (base + "log: {level: info}\n").write(toFile: path, atomically: true, encoding: .utf8)
        let level = LogLevelControl(.info)
        let (reloader, services) = try await start(path, level: level)
        #expect(await reloader.reload() == .applied(changed: [], needRestart: []), "nothing changed")

        try (base + "log: {level: debug}\naccess: {allow: [10.0.0.0/8]}\nrate-limit: {qps: 5}\n")
            .write(toFile: path, atomically: true, encoding: .utf8)
        #expect(await reloader.reload() == .applied(changed: ["access", "log.level", "rate-limit"], needRestart: []))
        #expect(level.level == .debug)
        let policy = services.handler.admissionPolicy
        #expect(policy.accessControl == AccessControlList(allowed: [IPNetwork("10.0.0.0/8")!]))
        #expect((policy.rateLimiter as? TokenBucketRateLimiter)?.configuration.queriesPerSecond == 5)

        // The cache shrinks in place; turning it off needs a restart.
        try (base + "log: {level: debug}\naccess: {allow: [10.0.0.0/8]}\nrate-limit: {qps: 5}\ncache: {size: 100}\n")
            .write(toFile: path, atomically: true, encoding: .utf8)
        #expect(await reloader.reload() == .applied(changed: ["cache"], needRestart: []))
        #expect(services.memoryCache?.configuration.maximumEntries == 100)
        try (base + "log: {level: debug}\naccess: {allow: [10.0.0.0/8]}\nrate-limit: {qps: 5}\ncache: {size: 0}\n")
            .write(toFile: path, atomically: true, encoding: .utf8)
        #expect(await reloader.reload() == .applied(changed: [], needRestart: ["cache"]))

        // A file with a problem changes nothing, and says where the problem is.
        try (base + "log: {level: info}\nrate-limit: {qps: lots}\n").write(
            toFile: path,
            atomically: true,
            encoding: .utf8
        )
        guard case .failed(let reason) = await reloader.reload() else {
            Issue.record("a bad file must fail the reload")
            return
        }
        #expect(reason == "\(path):4: rate-limit.qps: must be a number")
        #expect(level.level == .debug && services.handler.admissionPolicy.rateLimiter != nil)

        // What only a restart can change is reported, and the rest applied.
        try (base.replacingOccurrences(of: "5353", with: "5354") + "log: {level: info}\ncache: {size: 100}\n")
            .write(toFile: path, atomically: true, encoding: .utf8)
        #expect(
            await reloader.reload()
                == .applied(changed: ["access", "log.level", "rate-limit"], needRestart: ["listen"])
        )
        #expect(services.handler.admissionPolicy.rateLimiter == nil && level.level == .info)
    }

    /// The member's transport object.
    static func identity(_ member: UpstreamPool.Member) -> ObjectIdentifier? {
        (member.transport as? DoTUpstreamTransport).map(ObjectIdentifier.init)
    }

    @Test func upstreamsThatStayKeepTheirTransportsAndTheOthersAreReplaced() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("dotproxy-reload-\(UUID())")
        defer { try? FileManager.default.removeItem(at: directory) }
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let path = directory.appendingPathComponent("dotproxy.yaml").path
        try "upstreams:\n  one: {address: 192.0.2.1}\n  two: {address: 192.0.2.2}\n"
            .write(toFile: path, atomically: true, encoding: .utf8)
        let (reloader, services) = try await start(path, level: LogLevelControl(.info))
        let before = services.pool.members
        #expect(before.map(\.name) == ["one", "two"])

        try
            "upstreams:\n  two: {address: 192.0.2.2}\n  three: {address: 192.0.2.3, tls-min-version: \"1.3\"}\nupstream-policy: sequential\n"
            .write(toFile: path, atomically: true, encoding: .utf8)
        #expect(await reloader.reload() == .applied(changed: ["upstream-policy", "upstreams"], needRestart: []))
        let after = services.pool.members
        #expect(after.map(\.name) == ["two", "three"])
        #expect(Self.identity(after[0]) == Self.identity(before[1]), "two kept its transport")
        #expect(services.pool.configuration.policy is SequentialSelectionPolicy)

        // A changed TLS setting makes a new transport for that upstream.
        try
            "upstreams:\n  two: {address: 192.0.2.2, tls-min-version: \"1.3\"}\n  three: {address: 192.0.2.3, tls-min-version: \"1.3\"}\nupstream-policy: sequential\n"
            .write(toFile: path, atomically: true, encoding: .utf8)
        #expect(await reloader.reload() == .applied(changed: ["upstreams"], needRestart: []))
        let last = services.pool.members
        #expect(Self.identity(last[0]) != Self.identity(after[0]))
        #expect(Self.identity(last[1]) == Self.identity(after[1]))
    }

    @Test func theWatcherSeesAConfigMapUpdateAndAnEditInPlace() throws {
        // A ConfigMap mount: file -> ..data/file, ..data -> a directory per version.
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("dotproxy-watch-\(UUID())")
        defer { try? FileManager.default.removeItem(at: directory) }
        for version in ["..v1", "..v2"] {
            let folder = directory.appendingPathComponent(version)
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            try "log: {level: info}\n".write(
                to: folder.appendingPathComponent("dotproxy.yaml"),
                atomically: true,
                encoding: .utf8
            )
        }
        let data = directory.appendingPathComponent("..data").path
        try FileManager.default.createSymbolicLink(atPath: data, withDestinationPath: "..v1")
        let path = directory.appendingPathComponent("dotproxy.yaml").path
        try FileManager.default.createSymbolicLink(atPath: path, withDestinationPath: "..data/dotproxy.yaml")

        let first = try #require(ConfigFileWatcher.fingerprint(of: path))
        #expect(ConfigFileWatcher.fingerprint(of: path) == first, "nothing changed")
        try FileManager.default.removeItem(atPath: data)
        try FileManager.default.createSymbolicLink(atPath: data, withDestinationPath: "..v2")
        let second = try #require(ConfigFileWatcher.fingerprint(of: path))
        #expect(second != first, "the link now leads to another file, with the same content")
        // Edited in place: a longer file.
        try "log: {level: debug}\n# more\n".write(toFile: path, atomically: false, encoding: .utf8)
        #expect(ConfigFileWatcher.fingerprint(of: path) != second)
        try FileManager.default.removeItem(atPath: data)
        #expect(ConfigFileWatcher.fingerprint(of: path) == nil, "a broken link leads nowhere")
    }

    @Test(
        arguments: [
            ("missing file", nil, "no such file"),
            ("invalid YAML", "upstreams: [\n", "not valid YAML"),
            (
                "wrong type", "upstreams: {one: {address: 192.0.2.1}}\ncache: {size: many}\n",
                "cache.size: must be a whole number"
            ),
            ("unknown key", "upstreams: {one: {address: 192.0.2.1}}\ncahce: {size: 5}\n", "cahce: unknown key"),
            (
                "duplicate upstream", "upstreams: {one: {address: 192.0.2.1}, two: {address: \"192.0.2.1:853\"}}\n",
                "is already upstream one"
            ),
            ("empty upstream list", "upstreams: {}\n", "upstreams: must map a name"),
        ] as [(String, String?, String)]
    )
    func aBadFileAtReloadIsLoggedAndChangesNothing(_ case: String, text: String?, reason: String) async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("dotproxy-reload-\(UUID())")
        defer { try? FileManager.default.removeItem(at: directory) }
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let path = directory.appendingPathComponent("dotproxy.yaml").path
        try "upstreams: {one: {address: 192.0.2.1}}\naccess: {allow: [10.0.0.0/8]}\n"
            .write(toFile: path, atomically: true, encoding: .utf8)
        let (reloader, services) = try await start(path, level: LogLevelControl(.info))
        if let text {
            try text.write(toFile: path, atomically: true, encoding: .utf8)
        } else {
            try FileManager.default.removeItem(atPath: path)
        }
        guard case .failed(let message) = await reloader.reload() else {
            Issue.record("\(`case`): the reload must fail")
            return
        }
        #expect(message.contains(reason), "\(`case`): \(message)")
        #expect(services.pool.members.map(\.name) == ["one"])
        #expect(
            services.handler.admissionPolicy.accessControl == AccessControlList(allowed: [IPNetwork("10.0.0.0/8")!])
        )
    }

    @Test func withoutAFileThereIsNothingToReload() async throws {
        let configuration = try DotProxyCommand.parse(["--upstream", "192.0.2.1"]).makeConfiguration()
        let services = try ProxyBuilder.build(
            configuration,
            group: MultiThreadedEventLoopGroup.singleton,
            logger: Logger(label: "test")
        )
        let reloader = ConfigReloader(
            commandLine: ["--upstream", "192.0.2.1"],
            environment: [:],
            running: configuration,
            services: services,
            logLevel: LogLevelControl(.info),
            logger: Logger(label: "test")
        )
        #expect(await reloader.reload() == .noFile)
    }
}

/// The TLS listener's pair is read again at every reload; one that cannot be used fails the reload and
/// the listener keeps the pair it has.
@Suite struct TLSListenerReloadTests {
    @Test func aReloadReadsThePairAgainAndABadPairKeepsTheOldOne() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("dotproxy-tlsreload-\(UUID())")
        defer { try? FileManager.default.removeItem(at: directory) }
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let certificate = directory.appendingPathComponent("cert.pem").path
        let key = directory.appendingPathComponent("key.pem").path
        try FileManager.default.copyItem(atPath: TestCertificates.server.certificateFile, toPath: certificate)
        try FileManager.default.copyItem(atPath: TestCertificates.server.keyFile, toPath: key)
        let path = directory.appendingPathComponent("dotproxy.yaml").path
        try """
        upstreams: {one: {address: 192.0.2.1}}
        listen: 127.0.0.1:5353
        listen-tls: 127.0.0.1:8853
        tls-listener: {cert: \(certificate), key: \(key)}

        """.write(toFile: path, atomically: true, encoding: .utf8)
        let (reloader, services) = try await ConfigReloaderTests().start(path, level: LogLevelControl(.info))
        let first = try #require(services.server.tlsContext)

        #expect(await reloader.reload() == .applied(changed: ["tls-listener"], needRestart: []))
        let second = try #require(services.server.tlsContext)
        #expect(second !== first, "the pair is read again: a renewed certificate keeps its file name")

        // A key that does not belong to the certificate.
        try FileManager.default.removeItem(atPath: key)
        try FileManager.default.copyItem(atPath: TestCertificates.wrongName.keyFile, toPath: key)
        guard case .failed(let reason) = await reloader.reload() else {
            Issue.record("a mismatched pair was accepted")
            return
        }
        #expect(reason.contains("--tls-cert") || reason.contains("tls-listener.cert"), "\(reason)")
        #expect(services.server.tlsContext === second, "the listener keeps the pair it had")

        // check-config loads the pair as a start would, and says which key is wrong, at its line.
        let file = try ConfigFile.load(path: path)
        #expect {
            try CheckConfigCommand.check(file)
        } throws: { error in
            "\(error)".contains("dotproxy.yaml:4: tls-listener.cert:")
        }
    }
}
