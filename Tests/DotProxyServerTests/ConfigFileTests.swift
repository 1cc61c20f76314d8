import ArgumentParser
import DoTCore
import DoTCoreTesting
import Foundation
import Testing

@testable import DotProxyServer

/// The configuration file: what it sets, what wins over it, and a clear message with the line for
/// everything wrong in it.
@Suite final class ConfigFileTests {
    /// The test's own temporary directory, removed with the test.
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("dotproxy-config-\(UUID())")

    deinit { try? FileManager.default.removeItem(at: directory) }

    /// A file with `text` in a fresh directory of the test's temporary directory.
    func file(_ text: String, name: String = "dotproxy.yaml") throws -> String {
        let folder = directory.appendingPathComponent("\(UUID())")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let path = folder.appendingPathComponent(name).path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// The problems `text` has, as `line: key: reason`, from loading and then checking it.
    func problems(_ text: String) throws -> [String] {
        let path = try file(text)
        do {
            try CheckConfigCommand.check(try ConfigFile.load(path: path))
            return []
        } catch {
            return error.problems.map { problem in
                "\(problem.line.map(String.init) ?? "-"): \(problem.key ?? "-"): \(problem.reason)"
            }
        }
    }

    static let sample = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Docs/deploy/dotproxy.yaml").path

    @Test func theShippedExampleIsValidAndSetsTheDefaults() throws {
        let file = try ConfigFile.load(path: Self.sample)
        try CheckConfigCommand.check(file)
        #expect(file.upstreams.map(\.name) == ["cloudflare", "quad9"])
        #expect(file.upstreams[1].minimumVersion == .tls13 && file.upstreams[0].minimumVersion == nil)
        // Its values are the defaults: the same configuration as the flags alone give.
        let fromFile = try DotProxyCommand.parse(file.arguments { _ in false }).makeConfiguration()
        let fromFlags = try DotProxyCommand.parse(file.upstreams.flatMap { ["--upstream", $0.argument.description] })
            .makeConfiguration()
        #expect(fromFile.summary == fromFlags.summary)
    }

    @Test func everyOptionHasAFileKey() {
        let names = DotProxyCommand.optionNames
        let options = Set(names.options + names.flags).subtracting(ConfigFileSchema.optionsWithoutKey)
        #expect(options == Set(ConfigFileSchema.settings.map(\.option)))
        #expect(ConfigFileSchema.settings.count == options.count, "one key per option")
    }

    @Test func flagsWinOverVariablesWhichWinOverTheFile() throws {
        let path = try file(
            """
            upstreams:
              one: {address: 192.0.2.1}
            cache:
              size: 500
              serve-stale: true
            rate-limit:
              qps: 20
            log:
              level: debug
            """
        )
        let (arguments, file) = try DotProxyCommand.resolveArguments(
            commandLine: ["--config", path, "--cache-size", "700"],
            environment: ["DOTPROXY_RATE_LIMIT": "30", "DOTPROXY_SERVE_STALE": "0"]
        )
        var configuration = try DotProxyCommand.parse(arguments).makeConfiguration()
        file?.applyUpstreamSettings(to: &configuration)
        #expect(configuration.cache?.maximumEntries == 700, "the flag")
        #expect(configuration.rateLimit?.queriesPerSecond == 30, "the variable")
        #expect(configuration.cache?.serveStale == false, "a variable that turns a flag off")
        #expect(configuration.logLevel == .debug, "the file")
        #expect(configuration.upstreamSettings.values.map(\.name) == ["one"])
        // An empty variable sets nothing, so the file's value stands.
        let (withEmpty, _) = try DotProxyCommand.resolveArguments(
            commandLine: ["--config", path],
            environment: ["DOTPROXY_LOG_LEVEL": ""]
        )
        #expect(try DotProxyCommand.parse(withEmpty).makeConfiguration().logLevel == .debug)
        // Upstreams on the command line replace the file's.
        let (replaced, _) = try DotProxyCommand.resolveArguments(
            commandLine: ["--config", path, "--upstream", "192.0.2.9"],
            environment: [:]
        )
        #expect(
            try DotProxyCommand.parse(replaced).makeConfiguration().upstreams.map(\.description) == ["192.0.2.9:853"]
        )
    }

    @Test func eachUpstreamKeepsItsOwnTLSSettings() throws {
        let pin = String(repeating: "A", count: 43) + "="
        let path = try file(
            """
            tls:
              min-version: "1.2"
            upstreams:
              strict:
                address: 192.0.2.1
                auth-name: dns.test
                pin-sha256: ["\(pin)"]
                tls-min-version: "1.3"
                timeout: 0.5
              plain:
                address: "[2001:db8::1]:8853"
            """
        )
        let file = try ConfigFile.load(path: path)
        let (arguments, _) = try DotProxyCommand.resolveArguments(
            commandLine: ["--config", path],
            environment: [:]
        )
        var configuration = try DotProxyCommand.parse(arguments).makeConfiguration()
        file.applyUpstreamSettings(to: &configuration)
        let strict = try #require(configuration.upstreamSettings[configuration.upstreams[0]])
        #expect(strict.name == "strict" && configuration.upstreams[0].description == "192.0.2.1:853#dns.test")
        let tls = strict.tls(from: configuration.tls)
        #expect(tls.minimumVersion == .tls13 && tls.spkiPins == [SPKIPin(base64: pin)!])
        #expect(strict.timeout == .milliseconds(500))
        let plain = try #require(configuration.upstreamSettings[configuration.upstreams[1]])
        #expect(
            plain.tls(from: configuration.tls).minimumVersion == .tls12
                && plain.tls(from: configuration.tls).spkiPins.isEmpty
        )
    }

    @Test func aMissingOrUnreadableFileIsNamed() throws {
        #expect { try ConfigFile.load(path: "/nonexistent/dotproxy.yaml") } throws: { error in
            "\(error)" == "/nonexistent/dotproxy.yaml: no such file"
        }
        let directory = FileManager.default.temporaryDirectory.path
        #expect { try ConfigFile.load(path: directory) } throws: { error in
            "\(error)".hasPrefix("\(directory): cannot read it")
        }
        // A device or a log file named by mistake is refused after 1 MiB, not read until memory runs out.
        #expect { try ConfigFile.load(path: "/dev/zero") } throws: { error in
            "\(error)" == "/dev/zero: is larger than 1 MiB: not a configuration file"
        }
        #expect(ConfigFileError.exitCode == 78)
    }

    @Test func eachProblemHasItsLineAndKey() throws {
        #expect(
            try problems("upstreams: {a: {address: 1.1.1.1}}\ncache: [\n") == [
                "3: -: not valid YAML: did not find expected node content"
            ]
        )
        #expect(
            try problems(
                """
                upstreams: {a: {address: 1.1.1.1}}
                cache:
                  size: lots
                  max-tll: 60
                rate-limit:
                  ipv4-prefix: 40
                log:
                  level: chatty
                  queries: maybe
                listen: {port: 53}
                """
            ) == [
                "3: cache.size: must be a whole number",
                "4: cache.max-tll: unknown key (did you mean cache.max-ttl?)",
                "8: log.level: must be one of trace, debug, info, notice, warning, error, critical",
                "9: log.queries: must be true or false",
                "10: listen: must be a list of values, or one value",
            ]
        )
        // An empty key (the fuzz target's first find) is said as such, not as ": unknown key".
        #expect(
            try problems("upstreams: {a: {address: 1.1.1.1}}\n\"\": 1\ncache: {\"\": 2}\n") == [
                "2: -: a key is empty", "3: cache: a key is empty",
            ]
        )
        #expect(try problems("!x : 1\n!x : 2\n") == ["1: an empty key: given more than once, first here"])
        #expect(
            try problems("upstreams: {a: {address: 1.1.1.1}}\nthreads: 1\nthreads: 2\n")
                == ["2: threads: given more than once, first here"]
        )
        // A value the option's own check refuses is reported at the file's line, under the file's key.
        #expect(
            try problems("upstreams: {a: {address: 1.1.1.1}}\nrate-limit:\n  ipv4-prefix: 40\n")
                == ["3: rate-limit.ipv4-prefix: 40 is not between 1 and 32"]
        )
    }

    @Test func aComplaintIsSaidOfTheKeyWhoseOptionItNamesNotOfAPrefix() throws {
        // --rate-limit is the start of --rate-limit-slip, --redis of --redis-timeout, --listen of
        // --listen-tls: each complaint goes to the key that set the option it names.
        #expect(
            try problems(
                "upstreams: {a: {address: 1.1.1.1}}\nrate-limit:\n  qps: 10\n  slip: 0\n"
            ) == ["4: rate-limit.slip: 0 must be 1 or more"]
        )
        let redis = try problems(
            "upstreams: {a: {address: 1.1.1.1}}\nredis:\n  url: redis://127.0.0.1\n  timeout: 0\n"
        )
        #expect(redis.count == 1 && redis.first?.hasPrefix("4: redis.timeout: ") == true, "\(redis)")
    }

    @Test func upstreamsMustBeThereDistinctAndWellFormed() throws {
        #expect(
            try problems("log: {level: info}\n") == [
                "-: upstreams: give at least one upstream resolver, for example --upstream 1.1.1.1"
            ]
        )
        #expect(try problems("upstreams: {}\n").first?.hasPrefix("1: upstreams: must map a name") == true)
        #expect(
            try problems(
                """
                upstreams:
                  first: {address: 1.1.1.1}
                  again: {address: "1.1.1.1:853"}
                  bad: {address: "not an address"}
                  nameless: {auth-name: dns.test}
                  typo: {adress: 9.9.9.9}
                  "dots.here": {address: 9.9.9.9}
                """
            ) == [
                "3: upstreams.again: 1.1.1.1:853#cloudflare-dns.com is already upstream first",
                "4: upstreams.bad.address: not an address is not IP, IP:PORT, [IPv6]:PORT or tls://HOSTNAME[:PORT], with an optional #auth-name",
                "5: upstreams.nameless: needs an address: IP, IP:PORT, [IPv6]:PORT or tls://HOSTNAME[:PORT]",
                "6: upstreams.typo.adress: unknown key (an upstream has address, auth-name, pin-sha256, ca-file, tls-min-version, timeout)",
                "6: upstreams.typo: needs an address: IP, IP:PORT, [IPv6]:PORT or tls://HOSTNAME[:PORT]",
                "7: upstreams.dots.here: a name is letters, digits, - and _",
            ]
        )
    }

    @Test func hostileFilesGetAnAnswerNotACrashOrAMemoryBlowUp() throws {
        // Binary garbage.
        let garbage = try file("")
        try Data((0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 7919 &+ 13) }).write(
            to: URL(fileURLWithPath: garbage)
        )
        #expect { try ConfigFile.load(path: garbage) } throws: { "\($0)".hasSuffix("is not UTF-8 text") }
        // A billion laughs: nine levels of ten aliases, 10^9 strings if expanded; aliases stay references.
        var laughs = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
        for level in 1...8 {
            laughs +=
                "a\(level): &a\(level) [" + Array(repeating: "*a\(level - 1)", count: 10).joined(separator: ", ")
                + "]\n"
        }
        laughs += "listen: *a8\n"
        let found = try problems(laughs)
        #expect(
            found.first == "1: a0: unknown key" && found.last == "10: listen: must be a list of values, or one value"
        )
        // Deep nesting.
        #expect(try problems(String(repeating: "[", count: 5000)).first?.contains("not valid YAML") == true)
    }

    @Test func aKeyWithNoValueIsNotSet() throws {
        #expect(try problems("upstreams: {a: {address: 1.1.1.1}}\nmetrics:\nthreads:\n").isEmpty)
    }
}

extension Error {
    /// The problems of a ``ConfigFileError``; a single made-up one for any other error.
    fileprivate var problems: [ConfigFileError.Problem] {
        (self as? ConfigFileError)?.problems ?? [.init(line: nil, key: nil, reason: "\(self)")]
    }
}
