import CoreMetrics
import NIOConcurrencyHelpers
import NIOCore

/// The metrics the proxy reports, in one place: their names, their labels and their handles.
///
/// Every counter goes through swift-metrics, created once from a `MetricsFactory` (the bootstrapped
/// `MetricsSystem.factory` by default) and shared by the handler, the cache, the pool and the
/// transports that are given the same instance. The library never bootstraps a backend; an
/// executable does (dotproxy exports Prometheus text). Without a backend every handle is a no-op.
///
/// Names use the `dotproxy_` prefix and base units (seconds, bytes). Labels stay low in cardinality:
/// a transport, a query type from a fixed list (others are `other`), a response code, an upstream's
/// configured name, an error kind; never a query name or a client address.
public final class DNSProxyMetrics: Sendable {
    /// The metric names.
    public enum Name {
        /// Counter: parsed client queries, labels `transport` (`udp`, `tcp`, `tls`) and `qtype`.
        public static let queries = "dotproxy_queries_total"
        /// Counter: replies sent to clients, label `rcode`.
        public static let responses = "dotproxy_responses_total"
        /// Histogram (timer): from a query's arrival to its reply, for replies that waited for an
        /// upstream (misses, coalesced and stale answers), label `transport`. Immediate answers (cache
        /// hits, refusals, FORMERR) take microseconds and are not timed one by one: a contended
        /// histogram cost more than the rest of a hit.
        public static let forwardedRequestDuration = "dotproxy_forwarded_request_duration_seconds"
        /// Counter: queries dropped or answered FORMERR because they could not be read, label
        /// `action` (`dropped`, `formerr`).
        public static let malformed = "dotproxy_malformed_packets_total"
        /// Counter: queries refused or dropped because the client is outside the access list.
        public static let accessDenied = "dotproxy_acl_denied_total"
        /// Counter: rate-limiter decisions, label `action` (`admit`, `refuse`, `drop`, `slip`); only
        /// counted when a limiter is configured.
        public static let rateLimitDecisions = "dotproxy_ratelimit_decisions_total"
        /// Counter: client prefixes the rate limiter forgot to stay within its bound (a flood from many
        /// sources, or more clients than ``TokenBucketRateLimiter/Configuration/maximumPrefixes``).
        public static let rateLimitEvictions = "dotproxy_ratelimit_evictions_total"
        /// Counter: UDP replies replaced by an empty truncated reply.
        public static let truncated = "dotproxy_truncated_responses_total"
        /// Counter: queries answered by an identical query already in flight.
        public static let coalesced = "dotproxy_coalesced_queries_total"
        /// Counter: cache lookups that found a fresh reply.
        public static let cacheHits = "dotproxy_cache_hits_total"
        /// Counter: cache lookups that found nothing fresh.
        public static let cacheMisses = "dotproxy_cache_misses_total"
        /// Counter: background refreshes of entries close to expiry.
        public static let cachePrefetches = "dotproxy_cache_prefetches_total"
        /// Counter: expired replies served because the upstream failed or was slow (RFC 8767).
        public static let cacheStaleAnswers = "dotproxy_cache_stale_answers_total"
        /// Counter: entries evicted to make room.
        public static let cacheEvictions = "dotproxy_cache_evictions_total"
        /// Gauge: entries held.
        public static let cacheEntries = "dotproxy_cache_entries"
        /// Gauge: octets of replies held.
        public static let cacheBytes = "dotproxy_cache_bytes"
        /// Gauge: client TCP connections open.
        public static let clientConnections = "dotproxy_client_tcp_connections"
        /// Gauge: client DNS-over-TLS connections open (handshaking or not).
        public static let clientTLSConnections = "dotproxy_client_tls_connections"
        /// Counter: client DNS-over-TLS connections accepted (past the connection limits).
        public static let clientTLSAccepted = "dotproxy_client_tls_connections_accepted_total"
        /// Counter: completed client TLS handshakes, labels `version` (`TLS1.3`, `TLS1.2`) and
        /// `resumed` (`true`, `false`).
        public static let clientTLSHandshakes = "dotproxy_client_tls_handshakes_total"
        /// Counter: client TLS handshakes that failed, label `reason` (`timeout`: not done within the
        /// handshake deadline; `closed`: the client left; `not_tls`: the first bytes were not a TLS
        /// record, such as plain DNS; `protocol`: no common version or cipher, a bad message; `other`).
        public static let clientTLSHandshakeFailures = "dotproxy_client_tls_handshake_failures_total"
        /// Counter: client DNS-over-TLS connections closed after the handshake because a record could not
        /// be decrypted or the TLS session broke (garbage, a tampered record).
        public static let clientTLSRecordFailures = "dotproxy_client_tls_record_failures_total"
        /// Counter: client connections closed at accept, labels `transport` (`tcp`, `tls`) and `reason`
        /// (`limit`: the total or per-client cap; `rate`: too many new connections from the client).
        public static let clientConnectionsRefused = "dotproxy_client_connections_refused_total"
        /// Counter: queries sent to an upstream (each failover attempt counts), label `upstream`.
        public static let upstreamQueries = "dotproxy_upstream_queries_total"
        /// Counter: failed upstream attempts, labels `upstream` and `kind` (an
        /// ``UpstreamError/Code``, or `failover_rcode` for a reply whose code fails over).
        public static let upstreamErrors = "dotproxy_upstream_errors_total"
        /// Histogram (timer): an upstream's reply time, label `upstream`.
        public static let upstreamDuration = "dotproxy_upstream_request_duration_seconds"
        /// Gauge: 1 while an upstream is usable, 0 while it is marked down, label `upstream`.
        public static let upstreamUp = "dotproxy_upstream_up"
        /// Gauge: DoT connections open to an upstream, label `upstream`.
        public static let upstreamConnections = "dotproxy_upstream_connections"
        /// Counter: completed TLS handshakes, labels `upstream` and `resumed` (`true`, `false`).
        public static let upstreamHandshakes = "dotproxy_upstream_tls_handshakes_total"
        /// Counter: DoT connections opened (attempted), label `upstream`.
        public static let upstreamConnectionsOpened = "dotproxy_upstream_connections_opened_total"
        /// Counter: queries moved to a fresh connection after theirs was reset, label `upstream`.
        public static let upstreamRetries = "dotproxy_upstream_retries_total"
        /// Counter: replies dropped, labels `upstream` and `reason` (`unmatched`: an ID or question no
        /// query in flight has; `malformed`: not a DNS message).
        public static let upstreamDroppedReplies = "dotproxy_upstream_dropped_replies_total"
        /// Counter: queries that moved on from this upstream to another, label `upstream`.
        public static let upstreamFailovers = "dotproxy_upstream_failovers_total"
        /// Counter: times the upstream was marked down, label `upstream`.
        public static let upstreamDownTransitions = "dotproxy_upstream_down_transitions_total"
        /// Counter: health probes sent, label `upstream`.
        public static let upstreamProbes = "dotproxy_upstream_probes_total"
        /// Counter: client queries sent to the upstream while every upstream was down, to find out
        /// whether it is back, label `upstream`.
        public static let upstreamRecoveryQueries = "dotproxy_upstream_recovery_queries_total"
        /// Counter: queries a filter blocked, label `list`.
        public static let filterBlocked = "dotproxy_filter_blocked_total"
        /// Counter: queries a filter answered from local data, label `source`.
        public static let filterLocalAnswers = "dotproxy_filter_local_answers_total"
        /// Gauge: the names a filter list holds, label `list`.
        public static let filterListEntries = "dotproxy_filter_list_entries"
        /// Gauge: when a filter list was last loaded, in seconds since the Unix epoch, label `list`.
        public static let filterListLoaded = "dotproxy_filter_list_loaded_timestamp_seconds"
        /// Counter: configuration reloads, label `result` (`success`, `failure`). The library has no
        /// configuration file; the name is here so that every metric dotproxy exports has its help.
        public static let configReloads = "dotproxy_config_reloads_total"
    }

    /// One line of help per metric name, for exporters that print it (Prometheus `# HELP`).
    public static let help: [String: String] = [
        Name.queries: "Parsed client queries by transport and query type.",
        Name.responses: "Replies sent to clients by response code.",
        Name.forwardedRequestDuration:
            "Time from a query's arrival to its reply, for replies that waited for an upstream.",
        Name.malformed: "Packets that could not be read, dropped or answered FORMERR.",
        Name.accessDenied: "Queries from clients outside the access list.",
        Name.rateLimitDecisions: "Rate-limiter decisions by action.",
        Name.rateLimitEvictions: "Client prefixes the rate limiter forgot to stay within its bound.",
        Name.truncated: "UDP replies replaced by an empty truncated reply.",
        Name.coalesced: "Queries answered by an identical query already in flight.",
        Name.cacheHits: "Cache lookups that found a fresh reply.",
        Name.cacheMisses: "Cache lookups that found nothing fresh.",
        Name.cachePrefetches: "Background refreshes of cache entries close to expiry.",
        Name.cacheStaleAnswers: "Expired replies served because the upstream failed or was slow.",
        Name.cacheEvictions: "Cache entries evicted to make room.",
        Name.cacheEntries: "Replies held in the cache.",
        Name.cacheBytes: "Octets of replies held in the cache.",
        Name.clientConnections: "Client TCP connections open.",
        Name.clientTLSConnections: "Client DNS-over-TLS connections open.",
        Name.clientTLSAccepted: "Client DNS-over-TLS connections accepted.",
        Name.clientTLSHandshakes: "Completed client TLS handshakes by version, resumed or not.",
        Name.clientTLSHandshakeFailures: "Client TLS handshakes that failed, by reason.",
        Name.clientTLSRecordFailures: "Client DNS-over-TLS connections closed after the handshake on a broken record.",
        Name.clientConnectionsRefused: "Client connections closed at accept: over a connection limit or rate.",
        Name.upstreamQueries: "Queries sent to each upstream, failover attempts included.",
        Name.upstreamErrors: "Failed upstream attempts by kind.",
        Name.upstreamDuration: "Upstream reply time.",
        Name.upstreamUp: "1 while the upstream is usable, 0 while it is marked down.",
        Name.upstreamConnections: "DoT connections open to the upstream.",
        Name.upstreamHandshakes: "Completed TLS handshakes to the upstream, resumed or not.",
        Name.upstreamConnectionsOpened: "DoT connections opened to the upstream (attempted).",
        Name.upstreamRetries: "Queries moved to a fresh connection after theirs was reset.",
        Name.upstreamDroppedReplies: "Replies from the upstream dropped: unmatched or malformed.",
        Name.upstreamFailovers: "Queries that moved on from this upstream to another.",
        Name.upstreamDownTransitions: "Times the upstream was marked down.",
        Name.upstreamProbes: "Health probes sent to the upstream.",
        Name.upstreamRecoveryQueries: "Client queries sent while every upstream was down, to find one that is back.",
        Name.configReloads: "Configuration reloads by result; a failure kept the running configuration.",
        Name.filterBlocked: "Queries blocked, by the list that blocked them.",
        Name.filterLocalAnswers: "Queries answered from local data, by source.",
        Name.filterListEntries: "Names a filter list holds.",
        Name.filterListLoaded: "When a filter list was last loaded, in seconds since the Unix epoch.",
    ]

    /// The query types counted under their own `qtype` label; others count as `other`.
    static let countedTypes: [DNSRecordType] = [
        .a, .aaaa, .cname, .mx, .ns, .ptr, .soa, .srv, .txt, .https, .svcb, .caa, .ds, .dnskey, .naptr, .any,
    ]
    private static let transports = ClientProtocol.all

    private let factory: any MetricsFactory
    /// Indexed by transport (UDP 0, TCP 1, TLS 2) times the counted types (plus `other`), then the type.
    private let queries: [Counter]
    /// Indexed by header RCODE 0-15, then BADVERS (16) and any other extended code (17, `other`).
    private let responses: [Counter]
    private let forwardedDurations: [Timer]
    /// Indexed by ``RateLimitDecision`` raw value order: admit, refuse, drop, slip.
    private let rateLimitDecisions: [Counter]
    let malformedDropped: Counter
    let malformedAnswered: Counter
    let accessDenied: Counter
    let rateLimitEvictions: Counter
    let truncated: Counter
    let coalesced: Counter
    let cacheHits: Counter
    let cacheMisses: Counter
    let cachePrefetches: Counter
    let cacheStaleAnswers: Counter
    let cacheEvictions: Counter
    let cacheEntries: Meter
    let cacheBytes: Meter
    let clientConnections: Meter
    let clientTLSConnections: Meter
    let clientTLSAccepted: Counter
    let clientTLSRecordFailures: Counter
    /// Indexed by version (TLS 1.3 0, TLS 1.2 1) times 2, plus 1 when resumed.
    private let clientTLSHandshakes: [Counter]
    /// Indexed by ``TLSHandshakeFailureReason`` order.
    private let clientTLSHandshakeFailures: [Counter]
    /// Indexed by transport (TCP 0, TLS 1) times 2, plus 1 for `rate`.
    private let clientConnectionsRefused: [Counter]
    private let upstreams = NIOLockedValueBox([String: UpstreamMetrics]())
    /// Counters labelled with a name known only at run time (a filter list), created on first use.
    private let named = NIOLockedValueBox([NamedCounter: Counter]())

    /// A metric and the value of its one label.
    private struct NamedCounter: Hashable {
        let name: String
        let value: String
    }

    /// Creates the handles.
    ///
    /// - Parameter factory: Where the handles come from; the bootstrapped `MetricsSystem.factory` by
    ///   default. Tests pass a `TestMetrics` from MetricsTestKit.
    public init(factory: any MetricsFactory = MetricsSystem.factory) {
        self.factory = factory
        func counter(_ name: String, _ dimensions: [(String, String)] = []) -> Counter {
            Counter(label: name, dimensions: dimensions, factory: factory)
        }
        let typeLabels = Self.countedTypes.map(\.description) + ["other"]
        queries = Self.transports.flatMap { transport in
            typeLabels.map { counter(Name.queries, [("transport", "\(transport)"), ("qtype", $0)]) }
        }
        responses =
            ((0..<16).map { DNSResponseCode(truncating: UInt16($0)).description } + [
                DNSResponseCode.badVersion.description, "other",
            ]).map {
                counter(Name.responses, [("rcode", $0)])
            }
        forwardedDurations = Self.transports.map {
            Timer(label: Name.forwardedRequestDuration, dimensions: [("transport", "\($0)")], factory: factory)
        }
        rateLimitDecisions = ["admit", "refuse", "drop", "slip"].map {
            counter(Name.rateLimitDecisions, [("action", $0)])
        }
        malformedDropped = counter(Name.malformed, [("action", "dropped")])
        malformedAnswered = counter(Name.malformed, [("action", "formerr")])
        accessDenied = counter(Name.accessDenied)
        rateLimitEvictions = counter(Name.rateLimitEvictions)
        truncated = counter(Name.truncated)
        coalesced = counter(Name.coalesced)
        cacheHits = counter(Name.cacheHits)
        cacheMisses = counter(Name.cacheMisses)
        cachePrefetches = counter(Name.cachePrefetches)
        cacheStaleAnswers = counter(Name.cacheStaleAnswers)
        cacheEvictions = counter(Name.cacheEvictions)
        cacheEntries = Meter(label: Name.cacheEntries, dimensions: [], factory: factory)
        cacheBytes = Meter(label: Name.cacheBytes, dimensions: [], factory: factory)
        clientConnections = Meter(label: Name.clientConnections, dimensions: [], factory: factory)
        clientTLSConnections = Meter(label: Name.clientTLSConnections, dimensions: [], factory: factory)
        clientTLSAccepted = counter(Name.clientTLSAccepted)
        clientTLSRecordFailures = counter(Name.clientTLSRecordFailures)
        clientTLSHandshakes = ["TLS1.3", "TLS1.2"].flatMap { version in
            ["false", "true"].map { counter(Name.clientTLSHandshakes, [("version", version), ("resumed", $0)]) }
        }
        clientTLSHandshakeFailures = TLSHandshakeFailureReason.allCases.map {
            counter(Name.clientTLSHandshakeFailures, [("reason", $0.rawValue)])
        }
        clientConnectionsRefused = ["tcp", "tls"].flatMap { transport in
            ["limit", "rate"].map {
                counter(Name.clientConnectionsRefused, [("transport", transport), ("reason", $0)])
            }
        }
    }

    // MARK: Recording (internal: the library's components call these)

    /// Counts a parsed query.
    func recordQuery(type: DNSRecordType?, clientProtocol: ClientProtocol) {
        let slot = type.flatMap { Self.countedTypes.firstIndex(of: $0) } ?? Self.countedTypes.count
        queries[clientProtocol.index * (Self.countedTypes.count + 1) + slot].increment()
    }

    /// Counts a reply by its response code: the header's four bits, joined with the extended bits
    /// when the reply ends with an option-less OPT record, as every reply dotproxy writes to an EDNS
    /// client does (BADVERS is NOERROR in the header).
    func recordResponse(_ reply: ByteBuffer?) {
        guard let reply, let flags = reply.getInteger(at: reply.readerIndex + 3, as: UInt8.self) else { return }
        let headerBits = Int(flags & 0x0F)
        let opt = reply.readerIndex + reply.readableBytes - EDNSRecord.proxyOPTLength
        // The OPT record: owner (the root), TYPE, CLASS, then TTL = extended RCODE, version, flags; RDLENGTH.
        guard headerBits == 0, opt >= reply.readerIndex + DNSHeader.wireLength,
            reply.getInteger(at: opt, as: UInt8.self) == 0,
            reply.getInteger(at: opt + 1, as: UInt16.self) == DNSRecordType.opt.rawValue,
            reply.getInteger(at: opt + 9, as: UInt16.self) == 0,
            let extended = reply.getInteger(at: opt + 5, as: UInt8.self), extended != 0
        else {
            responses[headerBits].increment()
            return
        }
        responses[extended == DNSResponseCode.badVersion.extendedBits ? 16 : 17].increment()
    }

    /// Records the time since `start` of a reply that waited for an upstream.
    func recordForwardedDuration(clientProtocol: ClientProtocol, since start: NIODeadline) {
        forwardedDurations[clientProtocol.index].recordNanoseconds((NIODeadline.now() - start).nanoseconds)
    }

    /// Counts a completed client TLS handshake; `version` is GnuTLS's name (`TLS1.3`, `TLS1.2`).
    func recordClientHandshake(version: String, resumed: Bool) {
        clientTLSHandshakes[(version == "TLS1.3" ? 0 : 2) + (resumed ? 1 : 0)].increment()
    }

    /// Counts a client TLS handshake that failed.
    func recordClientHandshakeFailure(_ reason: TLSHandshakeFailureReason) {
        clientTLSHandshakeFailures[TLSHandshakeFailureReason.allCases.firstIndex(of: reason)!].increment()
    }

    /// Counts a client connection closed at accept.
    func recordRefusedConnection(clientProtocol: ClientProtocol, rate: Bool) {
        clientConnectionsRefused[(clientProtocol == .tls ? 2 : 0) + (rate ? 1 : 0)].increment()
    }

    /// Counts a rate-limiter decision.
    func recordRateLimit(_ decision: RateLimitDecision) {
        switch decision {
        case .admit: rateLimitDecisions[0].increment()
        case .drop: rateLimitDecisions[2].increment()
        case .slip: rateLimitDecisions[3].increment()
        default: rateLimitDecisions[1].increment()
        }
    }

    /// Counts a query a filter blocked (by `list`) or answered (from `source`).
    func recordFiltered(_ decision: QueryFilterDecision) {
        let (name, label, value): (String, String, String)
        switch decision {
        case .pass: return
        case .blocked(_, let list, _): (name, label, value) = (Name.filterBlocked, "list", list)
        case .answered(_, let source): (name, label, value) = (Name.filterLocalAnswers, "source", source)
        }
        named.withLockedValue { counters in
            let key = NamedCounter(name: name, value: value)
            if let counter = counters[key] { return counter }
            let counter = Counter(label: name, dimensions: [(label, value)], factory: factory)
            counters[key] = counter
            return counter
        }.increment()
    }

    /// Reports the lists a filter was just built from: their sizes, and that they were loaded now.
    ///
    /// - Parameters:
    ///   - lists: Each list's name and how many names it holds.
    ///   - loadedAt: When, in seconds since the Unix epoch.
    public func recordFilterLists(_ lists: [(name: String, entries: Int)], loadedAt: Double) {
        for list in lists {
            Gauge(label: Name.filterListEntries, dimensions: [("list", list.name)], factory: factory)
                .record(list.entries)
            Gauge(label: Name.filterListLoaded, dimensions: [("list", list.name)], factory: factory).record(loadedAt)
        }
    }

    /// Moves a gauge up or down by `delta`.
    static func adjust(_ meter: Meter, by delta: Int) {
        if delta > 0 {
            meter.increment(by: Double(delta))
        } else if delta < 0 {
            meter.decrement(by: Double(-delta))
        }
    }

    /// The handles of the upstream named `name`, created on first use.
    func upstream(_ name: String) -> UpstreamMetrics {
        upstreams.withLockedValue { upstreams in
            if let existing = upstreams[name] { return existing }
            let created = UpstreamMetrics(name: name, factory: factory)
            upstreams[name] = created
            return created
        }
    }
}
