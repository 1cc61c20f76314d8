import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A real Unbound serving DNS and DNS over TLS on free 127.0.0.1 ports, started through
/// `scripts/unbound-rig.sh` (a generated CA, local data only, no recursion to the internet).
///
/// Starting throws, with the script's output, when Unbound or certtool is not installed: tests that
/// need the rig fail in CI rather than skip.
public final class UnboundRig: Sendable {
    /// The port for plain DNS over UDP and TCP.
    public let dnsPort: Int
    /// The port for DNS over TLS.
    public let dotPort: Int
    /// The PEM file of the CA that signed the server certificate.
    public let caFile: String
    /// The name on the server certificate (`dns.test`; it also covers 127.0.0.1).
    public let serverName: String
    /// The server key's SPKI SHA-256 pin, base64.
    public let spkiPin: String
    /// Unbound's process ID.
    public let pid: Int32
    private let directory: String

    /// The error thrown when the rig cannot start.
    public struct StartError: Error, CustomStringConvertible {
        /// The script's output.
        public let description: String
    }

    /// The repository's `scripts/unbound-rig.sh`.
    public static let script = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("scripts/unbound-rig.sh").path

    /// Starts Unbound and waits until it answers.
    ///
    /// > Warning: Blocks while Unbound starts (typically well under a second).
    public init() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "dotproxy-rig-\(UUID().uuidString)"
        ).path
        let output = try Self.run(["start", directory])
        var values: [String: String] = [:]
        for line in output.split(separator: "\n") {
            let parts = line.split(separator: "=", maxSplits: 1).map(String.init)
            if parts.count == 2 { values[parts[0]] = parts[1] }
        }
        guard let dns = values["RIG_DNS_PORT"].flatMap(Int.init), let dot = values["RIG_DOT_PORT"].flatMap(Int.init),
            let ca = values["RIG_CA"], let pid = values["RIG_PID"].flatMap(Int32.init)
        else { throw StartError(description: "unbound-rig.sh printed no ports:\n\(output)") }
        self.dnsPort = dns
        self.dotPort = dot
        self.caFile = ca
        self.serverName = values["RIG_NAME"] ?? "dns.test"
        self.spkiPin = values["RIG_SPKI_SHA256"] ?? ""
        self.pid = pid
        self.directory = directory
    }

    /// Stops Unbound by PID and removes its directory.
    public func stop() {
        _ = try? Self.run(["stop", directory])
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Runs the script with its output in a log file and waits for it with `waitpid`.
    ///
    /// Foundation's `Process.waitUntilExit` was seen to wait forever under the test runner once the
    /// script had daemonized Unbound, so this uses `posix_spawn` directly.
    private static func run(_ arguments: [String]) throws -> String {
        let directory = arguments[1]
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let logPath = directory + "/rig-script.log"
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, logPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        let argv = (["/bin/bash", script] + arguments).map { strdup($0) }
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, "/bin/bash", &actions, nil, argv + [nil], environ)
        guard spawned == 0 else { throw StartError(description: "cannot run \(script): errno \(spawned)") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let output = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
        let exitCode = (status >> 8) & 0xFF
        guard status & 0x7F == 0, exitCode == 0 else {
            throw StartError(description: "unbound-rig.sh \(arguments[0]) failed (status \(status)):\n\(output)")
        }
        return output
    }
}
