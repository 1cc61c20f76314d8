#if canImport(Glibc)
import Glibc
#endif

/// How many file descriptors the proxy may use, and how many of them client connections (TCP and TLS)
/// may take.
///
/// A shell's usual soft limit is 1,024 descriptors, and 1,100 client connections used to exhaust it:
/// the next upstream connection then failed with EMFILE and resolution stopped. So at start-up the
/// soft `RLIMIT_NOFILE` is raised to the hard limit, and the client-connection caps are sized to what
/// is left after a reserve for what the proxy itself needs: upstream connections, listeners, the
/// metrics listener's connections, and the runtime's own (epoll, eventfd and timer descriptors per
/// event loop, standard streams, the resolver).
struct DescriptorBudget: Equatable {
    /// The soft limit in effect after raising it.
    var limit: Int
    /// Descriptors kept back for everything but client TCP connections.
    var reserve: Int

    /// Descriptors kept for the runtime, whatever the configuration.
    static let fixedReserve = 64
    /// The most connections the metrics listener keeps open.
    static let metricsConnections = 32

    /// Raises the soft descriptor limit to the hard one (at most 1,048,576) and returns the limit in
    /// effect.
    static func raiseLimit() -> Int {
        var limits = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limits) == 0 else { return 1024 }
        let wanted = min(limits.rlim_max, 1 << 20)
        if limits.rlim_cur < wanted {
            var raised = limits
            raised.rlim_cur = wanted
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { limits = raised }
        }
        return Int(clamping: limits.rlim_cur)
    }

    /// The budget for a proxy with these many upstreams, event loops and listen addresses.
    ///
    /// - Parameters:
    ///   - limit: The descriptor limit.
    ///   - upstreams: Upstream members; each event loop may open `connectionsPerUpstream` to each.
    ///   - eventLoops: Event loops.
    ///   - listenAddresses: DNS listen addresses; each has a UDP socket per loop and a TCP listener.
    ///   - tlsListenAddresses: DNS-over-TLS listen addresses; each has a TCP listener.
    ///   - connectionsPerUpstream: Connections one event loop may open to one upstream.
    init(
        limit: Int,
        upstreams: Int,
        eventLoops: Int,
        listenAddresses: Int,
        tlsListenAddresses: Int = 0,
        connectionsPerUpstream: Int
    ) {
        self.limit = limit
        self.reserve =
            Self.fixedReserve + upstreams * eventLoops * connectionsPerUpstream + listenAddresses * (eventLoops + 1)
            + tlsListenAddresses + Self.metricsConnections + 1
    }

    /// The most client TCP connections that fit: `configured`, or what the limit leaves after the
    /// reserve if that is less (at least 16).
    func clientConnections(configured: Int) -> Int {
        min(configured, max(16, limit - reserve))
    }
}
