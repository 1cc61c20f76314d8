import CoreMetrics

/// The second tier's metric handles, all named `dotproxy_redis_*`.
///
/// | metric | type | labels |
/// |---|---|---|
/// | `dotproxy_redis_lookups_total` | counter | `result`: `hit`, `miss`, `stale`, `timeout`, `error`, `skipped` |
/// | `dotproxy_redis_lookup_duration_seconds` | timer | |
/// | `dotproxy_redis_stores_total` | counter | `result`: `sent`, `error`, `skipped` |
/// | `dotproxy_redis_breaker_open` | gauge | (event loops whose breaker is open) |
/// | `dotproxy_redis_connections` | gauge | |
/// | `dotproxy_redis_connects_total` | counter | `result`: `ok`, `failed` |
public struct RedisCacheMetrics: Sendable {
    let hits: Counter
    let misses: Counter
    let stale: Counter
    let timeouts: Counter
    let errors: Counter
    let skipped: Counter
    let lookupDuration: Timer
    let storesSent: Counter
    let storeErrors: Counter
    let storesSkipped: Counter
    let breakerOpen: Meter
    let connections: Meter
    let connects: Counter
    let connectFailures: Counter

    /// Handles from `factory` (the bootstrapped one by default).
    public init(factory: any MetricsFactory = MetricsSystem.factory) {
        func counter(_ name: String, _ result: String) -> Counter {
            Counter(label: name, dimensions: [("result", result)], factory: factory)
        }
        let lookups = "dotproxy_redis_lookups_total"
        hits = counter(lookups, "hit")
        misses = counter(lookups, "miss")
        stale = counter(lookups, "stale")
        timeouts = counter(lookups, "timeout")
        errors = counter(lookups, "error")
        skipped = counter(lookups, "skipped")
        lookupDuration = Timer(label: "dotproxy_redis_lookup_duration_seconds", factory: factory)
        let stores = "dotproxy_redis_stores_total"
        storesSent = counter(stores, "sent")
        storeErrors = counter(stores, "error")
        storesSkipped = counter(stores, "skipped")
        breakerOpen = Meter(label: "dotproxy_redis_breaker_open", factory: factory)
        connections = Meter(label: "dotproxy_redis_connections", factory: factory)
        connects = counter("dotproxy_redis_connects_total", "ok")
        connectFailures = counter("dotproxy_redis_connects_total", "failed")
    }
}
