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
                let (pid, ready) = try Self.spawn(arguments)
                if ready {
                    self.port = port
                    self.pid = pid
                    self.arguments = arguments
                    return
                }
                kill(pid, SIGKILL)
                var status: Int32 = 0
                waitpid(pid, &status, 0)
                lastError = "redis-server exited before it was ready on \(port)"
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
        let (pid, ready) = try Self.spawn(arguments)
        self.pid = pid
        guard ready else { throw StartError(description: "redis-server did not start again on \(port)") }
    }

    /// Starts redis-server with its log (standard output) on a pipe, and reads it until Redis says it
    /// accepts connections (`true`) or exits (`false`): an event, not a poll. The rest of the log is
    /// drained by a thread until Redis exits, so Redis never blocks on a full pipe.
    private static func spawn(_ arguments: [String]) throws -> (pid_t, ready: Bool) {
        var pipe: [Int32] = [0, 0]
        guard Glibc.pipe(&pipe) == 0 else { throw StartError(description: "pipe: errno \(errno)") }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, pipe[1], 1)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addclose(&actions, pipe[0])
        posix_spawn_file_actions_addclose(&actions, pipe[1])
        let argv = arguments.map { strdup($0) }
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let spawned = posix_spawnp(&pid, "redis-server", &actions, nil, argv + [nil], environ)
        close(pipe[1])
        guard spawned == 0 else {
            close(pipe[0])
            throw StartError(description: "cannot run redis-server (errno \(spawned)); install redis-server")
        }
        let log = FileHandle(fileDescriptor: pipe[0], closeOnDealloc: true)
        var seen = Data()
        var ready = false
        while !ready {
            let chunk = log.availableData  // blocks until Redis writes or exits
            if chunk.isEmpty { break }
            seen.append(chunk)
            ready = String(decoding: seen, as: UTF8.self).contains("Ready to accept connections")
        }
        if ready { Thread { while !log.availableData.isEmpty {} }.start() }
        return (pid, ready)
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
