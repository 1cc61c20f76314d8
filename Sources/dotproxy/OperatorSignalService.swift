import Logging
import ServiceLifecycle
import UnixSignals

/// Logs and otherwise ignores the signals operators send out of habit (SIGHUP to reload or reopen
/// logs, SIGUSR1 and SIGUSR2 for statistics), whose default action would kill the process at once,
/// without the drain that SIGTERM, SIGINT and SIGQUIT get.
///
/// The proxy has no configuration file to reload yet and writes its logs to standard error, so there
/// is nothing for these signals to do but be noticed.
struct OperatorSignalService: Service {
    /// The signals it traps.
    static let signals: [UnixSignal] = [.sighup, .sigusr1, .sigusr2]

    let logger: Logger

    func run() async throws {
        for await signal in await UnixSignalsSequence(trapping: Self.signals).cancelOnGracefulShutdown() {
            logger.notice(
                "signal received and ignored: dotproxy stops on SIGTERM, SIGINT or SIGQUIT, after a drain",
                metadata: ["signal": "\(signal)"]
            )
        }
    }
}
