import Logging
import ServiceLifecycle

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// With `--watch-config`: reloads when the configuration file changes, as a Kubernetes ConfigMap
/// update or a deploy that replaces the file does.
///
/// It looks every ``interval`` at where the path leads (a ConfigMap's file is a symbolic link that is
/// switched to a new directory) and at the file's identity, size and modification time; any change
/// triggers the same reload as SIGHUP, so a broken file is logged with its lines, counted, and changes
/// nothing. swift-configuration's `ReloadingFileProvider` watches files too, but it only reports a file
/// that parses, and a file that does not is logged at debug level without its line, which an operator
/// would not see.
struct ConfigFileWatcher: Service, CustomStringConvertible {
    /// How often the file is looked at.
    static let interval = Duration.seconds(2)

    let path: String
    let reloader: ConfigReloader

    var description: String { "ConfigFileWatcher(\(path))" }

    func run() async throws {
        var last = Self.fingerprint(of: path)
        while !Task.isShuttingDownGracefully {
            // The sleep ends early on shutdown, so the group stops at once.
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: Self.interval) }
            guard !Task.isShuttingDownGracefully else { return }
            let current = Self.fingerprint(of: path)
            guard current != last else { continue }
            last = current
            await reloader.reload()
        }
    }

    /// Where `path` leads and what is there now: the real path, device, inode, size and modification
    /// time; `nil` while it leads nowhere.
    static func fingerprint(of path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        var status = stat()
        guard stat(resolved, &status) == 0 else { return nil }
        #if canImport(Darwin)
        let modified = status.st_mtimespec
        #else
        let modified = status.st_mtim
        #endif
        return "\(String(cString: resolved)) \(status.st_dev) \(status.st_ino) \(status.st_size) "
            + "\(modified.tv_sec).\(modified.tv_nsec)"
    }
}
