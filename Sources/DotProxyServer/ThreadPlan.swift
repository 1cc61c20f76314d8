#if canImport(Glibc)
import Glibc
#endif

/// How many threads the proxy starts, and whether the process may start them.
///
/// The default number of event loops is one per ``coresPerEventLoop`` CPU cores, at least one and at
/// most ``maximumDefaultEventLoops``. Measured on two cores shared with the clients and the upstream
/// (Docs/performance.md, "How many event loops"), one loop served as many queries as two at less CPU
/// per query: a loop that gets a share of the traffic sleeps and is woken far more often, and each
/// wake-up costs more than the queries it serves. More loops pay only where the load exceeds what one
/// serves and cores are free (`--threads`).
///
/// Besides the loops the process runs its main thread, one thread for NIO's blocking pool (host-name
/// resolution through the system resolver), and a few of Dispatch's for the main queue and signal
/// handling, which start on demand; Swift's tasks run on the event loops
/// (`DotProxyCommand.startThreads()`), so no pool grows with the host's cores. Under a task limit (systemd's `TasksMax`, a container's `pids.max`) that
/// cannot hold them, NIO would stop the process with a trap when a thread fails to start; the plan
/// is checked at start-up instead, and the proxy exits with a message that says what to change.
struct ThreadPlan: Equatable {
    /// CPU cores per event loop by default.
    static let coresPerEventLoop = 4
    /// The most event loops the default starts.
    static let maximumDefaultEventLoops = 16
    /// Threads of NIO's blocking pool.
    static let blockingPoolThreads = 1
    /// Threads besides the loops and the pool that the process may start: main, and Dispatch's for
    /// the main queue and signal handling (started on demand; a ceiling, not what runs at idle).
    static let otherThreads = 8

    /// The event loops to start.
    var eventLoops: Int

    /// The plan for `threads` loops if given, else the default for `cores` cores.
    init(threads: Int?, cores: Int) {
        eventLoops = threads ?? min(max(1, cores / Self.coresPerEventLoop), Self.maximumDefaultEventLoops)
    }

    /// Every thread the process may run.
    var totalThreads: Int { eventLoops + Self.blockingPoolThreads + Self.otherThreads + 1 }

    /// Why the plan does not fit a task limit of `limit` with `running` tasks already in the group, or
    /// `nil` when it fits.
    func problem(taskLimit limit: Int, running: Int) -> String? {
        let room = limit - running
        guard totalThreads - 1 > room else { return nil }
        let fitting = max(0, room - Self.blockingPoolThreads - Self.otherThreads)
        let advice =
            fitting >= 1
            ? "give --threads \(fitting) or less, or raise the limit"
            : "raise the limit (TasksMax= in the systemd unit) to at least \(running + totalThreads)"
        let loops = eventLoops == 1 ? "1 event loop needs" : "\(eventLoops) event loops need"
        return
            "\(loops) up to \(totalThreads) threads, and the task limit (pids.max: systemd's TasksMax, a container's pids limit) is \(limit) with \(running) in use: \(advice)"
    }

    private static func number(in file: String) -> Int? {
        read(file)?.split(whereSeparator: \.isWhitespace).first.flatMap { Int($0) }
    }

    /// A small file's text, read with plain system calls: Foundation's file reading would map code
    /// that the proxy never runs again (idle RSS).
    private static func read(_ path: String) -> String? {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return nil }
        defer { close(descriptor) }
        var bytes = [UInt8](repeating: 0, count: 4096)
        let count = bytes.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress, $0.count) }
        return count > 0 ? String(decoding: bytes[..<count], as: UTF8.self) : nil
    }

    /// The task limit of this process's control group and the tasks in it, when a limit is set.
    static func currentTaskLimit() -> (limit: Int, running: Int)? {
        guard let groups = read("/proc/self/cgroup") else { return nil }
        for line in groups.split(separator: "\n") {
            // cgroup v1: "N:pids:/path"; v2: "0::/path".
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3 else { continue }
            let directory: String
            if fields[1] == "pids" {
                directory = "/sys/fs/cgroup/pids" + fields[2]
            } else if fields[1].isEmpty {
                directory = "/sys/fs/cgroup" + fields[2]
            } else {
                continue
            }
            // "max" when unlimited.
            guard let limit = number(in: directory + "/pids.max") else { continue }
            return (limit, number(in: directory + "/pids.current") ?? 1)
        }
        return nil
    }
}
