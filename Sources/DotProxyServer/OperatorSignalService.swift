import Logging
import ServiceLifecycle
import UnixSignals

/// Handles the signals operators send besides the stopping ones: SIGHUP reloads the configuration
/// file (``ConfigReloader``); SIGUSR1 and SIGUSR2, sent out of habit for statistics, are logged and
/// ignored. Their default action would kill the process at once, without the drain that SIGTERM,
/// SIGINT and SIGQUIT get.
struct OperatorSignalService: Service, CustomStringConvertible {
    /// The signals it traps.
    static let signals: [UnixSignal] = [.sighup, .sigusr1, .sigusr2]

    let logger: Logger
    /// Reloads on SIGHUP; `nil` when the proxy runs without a file (SIGHUP is then logged and ignored).
    let reloader: ConfigReloader?

    var description: String { "OperatorSignalService" }

    func run() async throws {
        for await signal in await UnixSignalsSequence(trapping: Self.signals).cancelOnGracefulShutdown() {
            if signal == .sighup, let reloader {
                await reloader.reload()
                continue
            }
            logger.notice(
                "signal received and ignored: dotproxy stops on SIGTERM, SIGINT or SIGQUIT, after a drain",
                metadata: ["signal": "\(signal)"]
            )
        }
    }
}
