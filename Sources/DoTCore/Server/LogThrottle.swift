import NIOConcurrencyHelpers
import NIOCore

/// Lets a kind of message through at most once per interval, and counts those held back, so that a
/// flood of bad clients cannot flood the log: the next message says how many were not logged.
package final class LogThrottle: Sendable {
    private let interval: TimeAmount
    private let state = NIOLockedValueBox([String: (last: NIODeadline, suppressed: Int)]())

    /// - Parameter interval: The least time between two messages of one kind; 10 s by default.
    package init(interval: TimeAmount = .seconds(10)) {
        self.interval = interval
    }

    /// Whether a message of `kind` may be logged now; when it may, how many were held back since the
    /// last one.
    package func admit(_ kind: String, now: NIODeadline) -> Int? {
        state.withLockedValue { state in
            if let entry = state[kind], now < entry.last + interval {
                state[kind] = (entry.last, entry.suppressed + 1)
                return nil
            }
            let suppressed = state[kind]?.suppressed ?? 0
            state[kind] = (now, 0)
            return suppressed
        }
    }
}
