import DoTCore
import MetricsTestKit

/// Metrics recorded in memory, for tests that count outcomes: the proxy's metrics are its only
/// ledger, so a test reads what an operator would scrape.
struct RecordedMetrics {
    let test: TestMetrics
    let metrics: DNSProxyMetrics

    init() {
        test = TestMetrics()
        metrics = DNSProxyMetrics(factory: test)
    }

    /// The total of one counter; 0 when it was never incremented.
    func count(_ name: String, _ dimensions: [(String, String)] = []) -> Int64 {
        (try? test.expectCounter(name, dimensions).totalValue) ?? 0
    }

    /// Replies sent with `rcode`.
    func replies(_ rcode: DNSResponseCode) -> Int64 {
        count(DNSProxyMetrics.Name.responses, [("rcode", rcode.description)])
    }
}

extension RecordedMetrics {
    /// The total of one of `transport`'s counters (labelled with its name), with `extra` labels.
    func count(_ name: String, of transport: any UpstreamTransport, _ extra: [(String, String)] = []) -> Int64 {
        count(name, [("upstream", transport.name)] + extra)
    }
}
