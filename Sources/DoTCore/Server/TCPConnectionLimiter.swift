import NIOConcurrencyHelpers
import NIOCore

/// Caps TCP connections in total and per client address, so that one client cannot take them all.
final class TCPConnectionLimiter: Sendable {
    private let maximumTotal: Int
    private let maximumPerClient: Int
    private let state = NIOLockedValueBox((total: 0, perClient: [String: Int]()))

    init(maximumTotal: Int, maximumPerClient: Int) {
        self.maximumTotal = maximumTotal
        self.maximumPerClient = maximumPerClient
    }

    /// Admits a new connection from `client`, or returns false when a cap is reached.
    func admit(_ client: String) -> Bool {
        state.withLockedValue { state in
            guard state.total < maximumTotal, state.perClient[client, default: 0] < maximumPerClient else { return false }
            state.total += 1
            state.perClient[client, default: 0] += 1
            return true
        }
    }

    func release(_ client: String) {
        state.withLockedValue { state in
            state.total -= 1
            let remaining = state.perClient[client, default: 1] - 1
            state.perClient[client] = remaining > 0 ? remaining : nil
        }
    }

    var openConnections: Int { state.withLockedValue { $0.total } }
}
