import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A real `redis-server` on a free 127.0.0.1 port, without persistence, for the integration tests.
/// Starting throws when redis-server is not installed: the tests fail in CI rather than skip.
final class RedisServerProcess: @unchecked Sendable {
    struct StartError: Error, CustomStringConvertible {
        let description: String
    }

    let port: Int
    private(set) var pid: pid_t
    private let arguments: [String]

    /// Starts Redis with `extra` arguments (`--requirepass x`) and waits until it accepts connections;
    /// with `tls`, on a TLS port only, with that certificate and key.
    init(_ extra: [String] = [], tls: (certificateFile: String, keyFile: String)? = nil) throws {
        var lastError = "no attempt"
        for _ in 0..<5 {
            let port = Self.freePort()
            let listen =
                tls.map {
                    [
                        "--port", "0", "--tls-port", "\(port)", "--tls-cert-file", $0.certificateFile, "--tls-key-file",
                        $0.keyFile, "--tls-auth-clients", "no",
                    ]
                } ?? ["--port", "\(port)"]
            let arguments =
                ["redis-server"] + listen + ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"] + extra
            do {
                let pid = try Self.spawn(arguments)
                if Self.waitUntilListening(port: port, pid: pid) {
                    self.port = port
                    self.pid = pid
                    self.arguments = arguments
                    return
                }
                kill(pid, SIGKILL)
                var status: Int32 = 0
                waitpid(pid, &status, 0)
                lastError = "redis-server did not listen on \(port)"
            } catch {
                lastError = "\(error)"
            }
        }
        throw StartError(description: lastError)
    }

    /// Sends `signal` (SIGSTOP, SIGCONT).
    func signal(_ signal: Int32) { kill(pid, signal) }

    /// Kills Redis and waits for it to exit.
    func stop() {
        kill(pid, SIGCONT)
        kill(pid, SIGKILL)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    }

    /// Starts it again on the same port (after ``stop()``).
    func restart() throws {
        pid = try Self.spawn(arguments)
        guard Self.waitUntilListening(port: port, pid: pid) else {
            throw StartError(description: "redis-server did not listen on \(port) again")
        }
    }

    private static func spawn(_ arguments: [String]) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        let argv = arguments.map { strdup($0) }
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let spawned = posix_spawnp(&pid, "redis-server", &actions, nil, argv + [nil], environ)
        guard spawned == 0 else {
            throw StartError(description: "cannot run redis-server (errno \(spawned)); install redis-server")
        }
        return pid
    }

    private static func waitUntilListening(port: Int, pid: pid_t) -> Bool {
        for _ in 0..<500 {
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid { return false }
            if canConnect(port: port) { return true }
            usleep(10_000)
        }
        return false
    }

    private static func canConnect(port: Int) -> Bool {
        let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(socket) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
    }

    private static func freePort() -> Int {
        let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(socket) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                _ = bind(socket, $0, length)
                return getsockname(socket, $0, &length)
            }
        }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}
