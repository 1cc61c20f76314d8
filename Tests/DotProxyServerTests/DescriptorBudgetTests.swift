import Testing

@testable import DotProxyServer

#if canImport(Glibc)
import Glibc
#endif

/// Client TCP connections sized to the descriptor limit, with a reserve for everything else.
@Suite struct DescriptorBudgetTests {
    @Test func theReserveCountsUpstreamConnectionsListenersAndTheMetricsListener() {
        let budget = DescriptorBudget(
            limit: 1024,
            upstreams: 2,
            eventLoops: 1,
            listenAddresses: 1,
            connectionsPerUpstream: 4
        )
        // 64 fixed, 2 × 1 × 4 upstream connections, 1 × (1 + 1) listener sockets, 32 metrics, 1 its listener.
        #expect(budget.reserve == 64 + 8 + 2 + 32 + 1)
        #expect(budget.clientConnections(configured: 1024) == 1024 - budget.reserve)
        #expect(budget.clientConnections(configured: 100) == 100, "a configured cap below what fits stays")
    }

    @Test func aTinyLimitStillAllowsSixteenAndAHighOneChangesNothing() {
        #expect(
            DescriptorBudget(limit: 70, upstreams: 1, eventLoops: 1, listenAddresses: 1, connectionsPerUpstream: 4)
                .clientConnections(configured: 1024) == 16
        )
        #expect(
            DescriptorBudget(
                limit: 65_536,
                upstreams: 64,
                eventLoops: 16,
                listenAddresses: 4,
                connectionsPerUpstream: 4
            ).clientConnections(configured: 1024) == 1024
        )
    }

    @Test func theSoftLimitIsRaisedToTheHardOne() {
        var limits = rlimit()
        #expect(getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limits) == 0)
        let wanted = Int(clamping: min(limits.rlim_max, 1 << 20))
        #expect(DescriptorBudget.raiseLimit() == wanted)
        #expect(getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limits) == 0 && Int(clamping: limits.rlim_cur) == wanted)
    }
}
