import NIOConcurrencyHelpers
import NIOCore
import Synchronization

/// Caps TCP connections in total and per client (an IPv4 address, or an IPv6 /64, which one host
/// usually holds whole), so that one client cannot take them all, and says when more than half of
/// them are taken, so that connections can shorten their idle timeout.
final class TCPConnectionLimiter: Sendable {
    private let maximumTotal: Int
    private let maximumPerClient: Int
    private let state = NIOLockedValueBox((total: 0, perClient: [ClientAddress: Int]()))
    private let busy = Atomic<Bool>(false)

    init(maximumTotal: Int, maximumPerClient: Int) {
        self.maximumTotal = maximumTotal
        self.maximumPerClient = maximumPerClient
    }

    /// Admits a new connection from `client`, or returns false when a cap is reached.
    func admit(_ client: ClientAddress) -> Bool {
        let key = client.connectionLimitKey
        return state.withLockedValue { state in
            guard state.total < maximumTotal, state.perClient[key, default: 0] < maximumPerClient else { return false }
            state.total += 1
            state.perClient[key, default: 0] += 1
            busy.store(state.total * 2 > maximumTotal, ordering: .relaxed)
            return true
        }
    }

    func release(_ client: ClientAddress) {
        let key = client.connectionLimitKey
        state.withLockedValue { state in
            state.total -= 1
            let remaining = state.perClient[key, default: 1] - 1
            state.perClient[key] = remaining > 0 ? remaining : nil
            busy.store(state.total * 2 > maximumTotal, ordering: .relaxed)
        }
    }

    /// Whether more than half of the connections are open; read without a lock.
    var isBusy: Bool { busy.load(ordering: .relaxed) }

    var openConnections: Int { state.withLockedValue { $0.total } }
}

extension ClientAddress {
    /// The address with an IPv6 address cut to its /64: the unit of the per-client connection cap.
    var connectionLimitKey: ClientAddress {
        switch kind {
        case .v4: self
        case .v6(let high, _): ClientAddress(IPv6Address(high: high, low: 0))
        }
    }
}
