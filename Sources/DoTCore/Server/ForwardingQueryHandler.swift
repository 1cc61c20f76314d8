import Logging
import NIOConcurrencyHelpers
import NIOCore
import Synchronization

/// The default ``DNSQueryHandler``: the query path, as stages a query passes in order (each in
/// `Server/Pipeline/`, with its own tests):
///
/// 1. Admission (`QueryAdmission`): header, access list, rate limiter.
/// 2. Parsing (`QueryParser`): one parse into a `ParsedQuery`, or FORMERR, NOTIMP, BADVERS.
/// 3. The filter (``QueryFilter``), if any: blocked, or answered from local data.
/// 4. The cache: a hit is answered at once (and may start a prefetch).
/// 5. Miss coalescing (`MissCoalescer`): identical misses share one upstream query.
/// 6. Forwarding (`UpstreamForwarder`), raced against a stale answer when the cache serves stale.
/// 7. Reply shaping (`ReplyShaper`): the client's ID, case, EDNS and UDP size; SERVFAIL with a reason.
///
/// Each outcome is counted once, in ``DNSProxyMetrics``. In detail:
///
/// - First, before anything but the header is read: the access list (REFUSED or a drop for clients
///   outside it) and the rate limiter (REFUSED, a drop, or an empty TC reply for a slip).
/// - A packet shorter than a header, or with QR set, is dropped and counted.
/// - A query that cannot be parsed gets FORMERR (header only); an opcode other than QUERY gets NOTIMP;
///   an EDNS version other than 0 gets BADVERS with the proxy's version-0 OPT (RFC 6891 §6.1.3); zero
///   or several questions get FORMERR.
/// - EDNS is hop-by-hop: the upstream query carries the proxy's own OPT (DO as the client asked, no
///   client options), and the reply carries the proxy's OPT only if the client sent one.
/// - Identical queries that miss while one is in flight wait for its reply instead of going upstream
///   (coalescing), each answered with its own ID and question case.
/// - A reply whose ID or question does not match is not delivered; any upstream failure gives SERVFAIL
///   before the query's deadline, with an Extended DNS Error (RFC 8914) for EDNS clients that says
///   why (``UpstreamError/extendedDNSError``).
/// - Over UDP, a reply larger than the client's EDNS size (512 without EDNS), or than
///   ``defaultMaximumUDPReplySize`` (1,232 octets, DNS Flag Day 2020) whatever the client asked for,
///   is replaced by an empty reply with TC set, the question and OPT kept, so the client retries over
///   TCP. A small query can then never draw a large reply, and replies are never IP fragments.
/// - TTLs with the top bit set become 0 (RFC 2181 §8), and an answer from the upstream carries no
///   TTL above the cache's lifetime for it (``DNSResponseCache/longestTTL(for:)``).
public final class ForwardingQueryHandler: DNSQueryHandler {
    /// The stages a reload may replace (``updateAdmission(_:)``, ``updateFilter(_:)``), read together
    /// once per query: one lock and one reference. A `Mutex` rather than a `NIOLockedValueBox`:
    /// uncontended it is one atomic exchange each way.
    private let replaceable: Mutex<ReplaceableStages>
    private let parser: QueryParser
    private let cache: any DNSResponseCache
    private let coalescer = MissCoalescer()
    private let forwarder: UpstreamForwarder
    private let shaper: ReplyShaper
    private let staleReplyDelay: TimeAmount
    private let logger: Logger
    private let logQueries: Bool
    private let metrics: DNSProxyMetrics

    /// Creates a handler.
    ///
    /// - Parameters:
    ///   - transport: Where queries go: a ``DoTUpstreamTransport``, or any other transport.
    ///   - accessControl: Who may query; loopback and private networks by default.
    ///   - deniedAction: What clients outside the access list get: REFUSED (the default) or nothing.
    ///   - rateLimiter: Per-client limits; none by default.
    ///   - filter: Blocks or answers queries before the cache (``DomainListFilter``); none by default.
    ///   - cache: Where replies are kept and repeated queries answered; none by default.
    ///   - staleReplyDelay: With a serve-stale cache, how long a client waits for the upstream before
    ///     an expired answer is sent instead (RFC 8767 client response timer); 1.8 s.
    ///   - queryTimeout: The deadline for an upstream reply; SERVFAIL after it. 2 s by default.
    ///   - maximumUDPReplySize: The largest UDP reply sent, whatever the client's EDNS size; larger
    ///     ones are truncated (TC). ``defaultMaximumUDPReplySize`` by default; kept within 512-65,535.
    ///   - logQueries: Whether to log each query's name and type at info level (off: privacy).
    ///   - metrics: Where every outcome is counted: queries, replies by code, durations, cache
    ///     outcomes, limiter decisions, refusals, truncations and malformed packets; handles from the
    ///     bootstrapped metrics factory by default.
    ///   - logger: Where to log.
    public init(
        transport: any UpstreamTransport,
        accessControl: AccessControlList = .default,
        deniedAction: AccessControlList.DeniedAction = .refuse,
        rateLimiter: (any QueryRateLimiter)? = nil,
        filter: (any QueryFilter)? = nil,
        cache: any DNSResponseCache = NoOpDNSResponseCache(),
        staleReplyDelay: TimeAmount = .milliseconds(1800),
        queryTimeout: TimeAmount = .seconds(2),
        maximumUDPReplySize: Int = ForwardingQueryHandler.defaultMaximumUDPReplySize,
        logQueries: Bool = false,
        metrics: DNSProxyMetrics = DNSProxyMetrics(),
        logger: Logger = Logger(label: "dotproxy.handler")
    ) {
        let admission = QueryAdmission(
            accessControl: accessControl,
            deniedAction: deniedAction,
            rateLimiter: rateLimiter,
            metrics: metrics
        )
        self.replaceable = Mutex(ReplaceableStages(admission: admission, filter: filter))
        self.parser = QueryParser(metrics: metrics, logger: logger)
        self.cache = cache
        self.forwarder = UpstreamForwarder(transport: transport, cache: cache, queryTimeout: queryTimeout)
        self.shaper = ReplyShaper(
            maximumUDPReplySize: min(
                max(maximumUDPReplySize, Int(EDNSRecord.minimumUDPPayloadSize)),
                Int(UInt16.max)
            ),
            metrics: metrics
        )
        self.staleReplyDelay = staleReplyDelay
        self.logQueries = logQueries
        self.metrics = metrics
        self.logger = logger
    }

    /// The default cap on UDP replies: 1,232 octets, which fits an IPv6 packet on a 1,280-octet link
    /// without fragments (DNS Flag Day 2020; Unbound's and Knot Resolver's default too).
    public static let defaultMaximumUDPReplySize = 1232

    /// Who may query, and how fast, now.
    public var admissionPolicy: AdmissionPolicy { replaceable.withLock { $0.admission.policy } }

    /// Replaces the filter while the handler serves (`nil`: none): queries that arrive afterwards meet
    /// the new one; build it aside first, so that no query meets a half-built one.
    public func updateFilter(_ filter: (any QueryFilter)?) {
        replaceable.withLock { $0 = ReplaceableStages(admission: $0.admission, filter: filter) }
    }

    /// Replaces who may query and how fast, while the handler serves: queries that arrive afterwards
    /// are admitted under `policy`; those already admitted go on. A new rate limiter starts with full
    /// buckets; pass the current one (``admissionPolicy``) to keep its state.
    public func updateAdmission(_ policy: AdmissionPolicy) {
        let door = QueryAdmission(policy: policy, metrics: metrics)
        replaceable.withLock { $0 = ReplaceableStages(admission: door, filter: $0.filter) }
    }

    public func handle(_ query: DNSClientQuery, on eventLoop: any EventLoop) -> EventLoopFuture<ByteBuffer?> {
        switch respond(to: query, on: eventLoop) {
        case .now(let reply): eventLoop.makeSucceededFuture(reply)
        case .later(let reply): reply
        }
    }

    public func respond(to query: DNSClientQuery, on eventLoop: any EventLoop) -> DNSQueryResponse {
        let response = resolve(query, now: .now(), on: eventLoop)
        // Replies that wait for the upstream are counted where they are completed (`complete(_:with:)`),
        // which saves a callback per miss.
        if case .now(let reply) = response { metrics.recordResponse(reply) }
        return response
    }

    private func resolve(_ query: DNSClientQuery, now: NIODeadline, on eventLoop: any EventLoop) -> DNSQueryResponse {
        let stages = replaceable.withLock { $0 }
        if case .answered(let reply) = stages.admission.admit(query, now: now) {
            return .now(reply)
        }
        let parsed: ParsedQuery
        switch parser.parse(query, now: now) {
        case .answered(let reply): return .now(reply)
        case .parsed(let query): parsed = query
        }
        metrics.recordQuery(type: parsed.view.questionType, clientProtocol: parsed.clientProtocol)
        if logQueries {
            logger.info(
                "query",
                metadata: [
                    "name": "\(parsed.view.questionName(in: parsed.message.buffer)?.description ?? "?")",
                    "type": "\(parsed.view.questionType?.description ?? "?")",
                    "client": "\(parsed.client.endpointDescription)", "protocol": "\(parsed.clientProtocol)",
                ]
            )
        }
        if let filter = stages.filter {
            let decision = filter.decide(parsed.message, client: parsed.client)
            switch decision {
            case .pass:
                break
            case .blocked(let reply, let list, let rule):
                metrics.recordFiltered(decision)
                if logQueries { logger.info("blocked", metadata: ["list": "\(list)", "rule": "\(rule)"]) }
                return .now(reply)
            case .answered(let reply, _):
                metrics.recordFiltered(decision)
                return .now(reply)
            }
        }
        if let hit = cache.lookup(parsed.message, key: parsed.key, now: now) {
            metrics.cacheHits.increment()
            if cache.claimPrefetch(key: parsed.key, now: now) {
                metrics.cachePrefetches.increment()
                // Refresh in the background; the new reply replaces the entry when it arrives.
                forwarder.forward(parsed.message, key: parsed.key, on: eventLoop) { _ in }
            }
            return .now(shaper.reply(to: parsed, cached: hit))
        }
        metrics.cacheMisses.increment()
        return .later(forwardMiss(parsed, on: eventLoop))
    }

    /// Sends a miss upstream, or joins an identical one in flight; with a serve-stale cache, races the
    /// upstream against the client response timer.
    private func forwardMiss(_ parsed: ParsedQuery, on eventLoop: any EventLoop) -> EventLoopFuture<ByteBuffer?> {
        // A miss outlives this call, so it keeps a copy of the query, not the listener's read buffer
        // the query may be a slice of (see `DNSClientQuery.message`).
        var parsed = parsed
        parsed.message.buffer = ByteBufferAllocator().buffer(buffer: parsed.message.buffer)
        let racing = cache.servesStale && staleReplyDelay < forwarder.queryTimeout
        let miss = PendingMiss(query: parsed, replied: eventLoop.makePromise(of: ByteBuffer?.self), counted: !racing)
        let role = coalescer.join(miss)
        if case .follower = role {
            metrics.coalesced.increment()
        } else if let fetching = cache.fetch(parsed.message, key: parsed.key, on: eventLoop) {
            // A slower tier first (Redis shared by replicas); the upstream only if it had nothing.
            fetching.whenComplete { [self] _ in
                if let hit = cache.lookup(miss.query.message, key: miss.query.key, now: .now()) {
                    answer(miss, role: role, with: .cached(hit))
                } else {
                    forwardUpstream(miss, role: role, on: eventLoop)
                }
            }
        } else {
            forwardUpstream(miss, role: role, on: eventLoop)
        }
        guard racing else { return miss.replied.futureResult }
        return raceWithStaleAnswer(miss.replied.futureResult, query: parsed, on: eventLoop)
    }

    /// What a leader's miss found: the upstream's outcome, or its own reply from the cache (a hit that
    /// a slower tier brought in; followers look theirs up).
    private enum MissOutcome: Sendable {
        case upstream(Result<ParsedDNSMessage, UpstreamError>)
        case cached(ByteBuffer)
    }

    /// Sends a leader's (or a lone) miss upstream, and answers it and its followers with the outcome.
    private func forwardUpstream(_ miss: PendingMiss, role: MissCoalescer.Role, on eventLoop: any EventLoop) {
        forwarder.forward(miss.query.message, key: miss.query.key, on: eventLoop) { [self] result in
            answer(miss, role: role, with: .upstream(result))
        }
    }

    /// Completes a leader's (or a lone) miss, on the loop it is called on, and its followers, each on
    /// its own event loop.
    private func answer(_ miss: PendingMiss, role: MissCoalescer.Role, with outcome: MissOutcome) {
        // Only a leader is in the table; it takes its followers out with it.
        let followers = role == .leader ? coalescer.finish(miss) : []
        deliver(outcome, to: miss, leader: miss)
        for follower in followers {
            let loop = follower.replied.futureResult.eventLoop
            if loop.inEventLoop {
                deliver(outcome, to: follower, leader: miss)
            } else {
                loop.execute { self.deliver(outcome, to: follower, leader: miss) }
            }
        }
    }

    /// Completes one waiting miss with its leader's outcome; call on its event loop. A follower of a
    /// cached outcome whose lookup no longer finds the entry goes upstream alone.
    private func deliver(_ outcome: MissOutcome, to waiting: PendingMiss, leader: PendingMiss) {
        switch outcome {
        case .upstream(let result):
            complete(waiting, with: result)
        case .cached(let hit):
            let found =
                waiting === leader ? hit : cache.lookup(waiting.query.message, key: waiting.query.key, now: .now())
            guard let found else {
                return forwardUpstream(waiting, role: .alone, on: waiting.replied.futureResult.eventLoop)
            }
            let reply = shaper.reply(to: waiting.query, cached: found)
            if waiting.counted { recordForwarded(reply, query: waiting.query) }
            waiting.replied.succeed(reply)
        }
    }

    /// Completes a miss with the client's reply for the upstream outcome; call on its event loop.
    private func complete(_ miss: PendingMiss, with result: Result<ParsedDNSMessage, UpstreamError>) {
        let answer = reply(to: miss.query, from: result)
        if miss.counted { recordForwarded(answer, query: miss.query) }
        miss.replied.succeed(answer)
    }

    private func recordForwarded(_ reply: ByteBuffer?, query: ParsedQuery) {
        metrics.recordResponse(reply)
        metrics.recordForwardedDuration(clientProtocol: query.clientProtocol, since: query.arrival)
    }

    /// The client's reply for an upstream outcome: the answer fitted to the client, or a stale answer
    /// or SERVFAIL after a failure.
    private func reply(to query: ParsedQuery, from result: Result<ParsedDNSMessage, UpstreamError>) -> ByteBuffer {
        switch result {
        case .success(let answer):
            return shaper.reply(to: query, answer: answer)
        case .failure(let error):
            logger.debug("upstream failure", metadata: ["error": "\(error)"])
            if let stale = cache.lookupStale(query.message, key: query.key, now: .now()) {
                metrics.cacheStaleAnswers.increment()
                return shaper.reply(to: query, cached: stale)
            }
            return shaper.serverFailure(to: query, error: error)
        }
    }

    /// With a serve-stale cache, answers from a stale entry if the upstream has not answered within
    /// the client response timer; whichever comes first is sent, the other is discarded.
    private func raceWithStaleAnswer(
        _ replied: EventLoopFuture<ByteBuffer?>,
        query: ParsedQuery,
        on eventLoop: any EventLoop
    ) -> EventLoopFuture<ByteBuffer?> {
        let result = eventLoop.makePromise(of: ByteBuffer?.self)
        let done = NIOLockedValueBox(false)
        /// Claims the race; `true` for the first caller only.
        @Sendable func claim() -> Bool {
            done.withLockedValue { done in
                defer { done = true }
                return !done
            }
        }
        let timer = eventLoop.scheduleTask(in: staleReplyDelay) { [self] in
            guard !done.withLockedValue({ $0 }),
                let stale = cache.lookupStale(query.message, key: query.key, now: .now()),
                claim()
            else { return }
            metrics.cacheStaleAnswers.increment()
            let reply = shaper.reply(to: query, cached: stale)
            recordForwarded(reply, query: query)
            result.succeed(reply)
        }
        replied.whenSuccess { [self] reply in
            guard claim() else { return }
            timer.cancel()
            recordForwarded(reply, query: query)
            result.succeed(reply)
        }
        return result.futureResult
    }
}

/// The handler's stages that a reload replaces, as one value so that a query reads them together.
private final class ReplaceableStages: Sendable {
    let admission: QueryAdmission
    let filter: (any QueryFilter)?

    init(admission: QueryAdmission, filter: (any QueryFilter)?) {
        self.admission = admission
        self.filter = filter
    }
}
