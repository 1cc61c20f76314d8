import CoreMetrics
import NIOConcurrencyHelpers

/// The handles of one upstream.
final class UpstreamMetrics: Sendable {
    let name: String
    private let factory: any MetricsFactory
    let queries: Counter
    let duration: Timer
    let up: Gauge
    let connections: Meter
    let handshakes: Counter
    let resumedHandshakes: Counter
    let connectionsOpened: Counter
    let retries: Counter
    let unmatchedReplies: Counter
    let malformedReplies: Counter
    let failovers: Counter
    let downTransitions: Counter
    let probes: Counter
    let recoveryQueries: Counter
    private let errors = NIOLockedValueBox([String: Counter]())

    init(name: String, factory: any MetricsFactory) {
        self.name = name
        self.factory = factory
        let label = [("upstream", name)]
        queries = Counter(label: DNSProxyMetrics.Name.upstreamQueries, dimensions: label, factory: factory)
        duration = Timer(label: DNSProxyMetrics.Name.upstreamDuration, dimensions: label, factory: factory)
        up = Gauge(label: DNSProxyMetrics.Name.upstreamUp, dimensions: label, factory: factory)
        connections = Meter(label: DNSProxyMetrics.Name.upstreamConnections, dimensions: label, factory: factory)
        handshakes = Counter(
            label: DNSProxyMetrics.Name.upstreamHandshakes,
            dimensions: label + [("resumed", "false")],
            factory: factory
        )
        resumedHandshakes = Counter(
            label: DNSProxyMetrics.Name.upstreamHandshakes,
            dimensions: label + [("resumed", "true")],
            factory: factory
        )
        func counter(_ name: String, _ extra: [(String, String)] = []) -> Counter {
            Counter(label: name, dimensions: label + extra, factory: factory)
        }
        connectionsOpened = counter(DNSProxyMetrics.Name.upstreamConnectionsOpened)
        retries = counter(DNSProxyMetrics.Name.upstreamRetries)
        unmatchedReplies = counter(DNSProxyMetrics.Name.upstreamDroppedReplies, [("reason", "unmatched")])
        malformedReplies = counter(DNSProxyMetrics.Name.upstreamDroppedReplies, [("reason", "malformed")])
        failovers = counter(DNSProxyMetrics.Name.upstreamFailovers)
        downTransitions = counter(DNSProxyMetrics.Name.upstreamDownTransitions)
        probes = counter(DNSProxyMetrics.Name.upstreamProbes)
        recoveryQueries = counter(DNSProxyMetrics.Name.upstreamRecoveryQueries)
    }

    /// Counts a failed attempt of kind `kind`.
    func recordError(_ kind: String) {
        errors.withLockedValue { errors in
            if let counter = errors[kind] { return counter }
            let counter = Counter(
                label: DNSProxyMetrics.Name.upstreamErrors,
                dimensions: [("upstream", name), ("kind", kind)],
                factory: factory
            )
            errors[kind] = counter
            return counter
        }.increment()
    }
}
