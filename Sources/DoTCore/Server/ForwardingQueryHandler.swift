import Logging
import NIOConcurrencyHelpers
import NIOCore

/// The default ``DNSQueryHandler``: checks the query, forwards it upstream and fits the reply to the
/// client.
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
///   TTL above the cache's lifetime for it (``DNSResponseCache/longestTTL(for:view:)``).
public final class ForwardingQueryHandler: DNSQueryHandler {
    /// Counters of the queries the handler answered itself.
    public struct Counters: Hashable, Sendable {
        /// Packets dropped: too short, or not a query.
        public var dropped = 0
        /// FORMERR replies.
        public var formatErrors = 0
        /// NOTIMP replies.
        public var notImplemented = 0
        /// BADVERS replies to queries with an EDNS version other than 0.
        public var badVersion = 0
        /// SERVFAIL replies after an upstream failure.
        public var serverFailures = 0
        /// UDP replies truncated to the client's size.
        public var truncated = 0
        /// Queries from clients outside the access list.
        public var denied = 0
        /// Queries that waited for an identical query already in flight instead of going upstream.
        public var coalesced = 0
    }

    private let transport: any UpstreamTransport
    private let accessControl: AccessControlList
    private let deniedAction: RateLimitDecision
    private let rateLimiter: any QueryRateLimiter
    /// Whether a limiter is configured; without one every decision is "admit" and is not counted.
    private let countsDecisions: Bool
    private let cache: any DNSResponseCache
    private let staleReplyDelay: TimeAmount
    private let queryTimeout: TimeAmount
    private let maximumUDPReplySize: Int
    private let logger: Logger
    private let logQueries: Bool
    private let metrics: DNSProxyMetrics
    private let countersBox = NIOLockedValueBox(Counters())
    /// Misses on their way upstream, by question; identical misses join the one in flight.
    private let inFlight = NIOLockedValueBox([DNSCacheKey: Miss]())

    /// Creates a handler.
    ///
    /// - Parameters:
    ///   - transport: Where queries go: a ``DoTUpstreamTransport``, or any other transport.
    ///   - accessControl: Who may query; loopback and private networks by default.
    ///   - deniedAction: ``RateLimitDecision/refuse`` (the default) or ``RateLimitDecision/drop`` for
    ///     clients outside the access list.
    ///   - rateLimiter: Per-client limits; none by default.
    ///   - cache: Where replies are kept and repeated queries answered; none by default.
    ///   - staleReplyDelay: With a serve-stale cache, how long a client waits for the upstream before
    ///     an expired answer is sent instead (RFC 8767 client response timer); 1.8 s.
    ///   - queryTimeout: The deadline for an upstream reply; SERVFAIL after it. 2 s by default.
    ///   - maximumUDPReplySize: The largest UDP reply sent, whatever the client's EDNS size; larger
    ///     ones are truncated (TC). ``defaultMaximumUDPReplySize`` by default; kept within 512-65,535.
    ///   - logQueries: Whether to log each query's name and type at info level (off: privacy).
    ///   - metrics: Where queries, replies, durations, cache outcomes, limiter decisions and malformed
    ///     packets are counted; handles from the bootstrapped metrics factory by default.
    ///   - logger: Where to log.
    public init(
        transport: any UpstreamTransport,
        accessControl: AccessControlList = .default,
        deniedAction: RateLimitDecision = .refuse,
        rateLimiter: any QueryRateLimiter = UnlimitedQueryRateLimiter(),
        cache: any DNSResponseCache = NoOpDNSResponseCache(),
        staleReplyDelay: TimeAmount = .milliseconds(1800),
        queryTimeout: TimeAmount = .seconds(2),
        maximumUDPReplySize: Int = ForwardingQueryHandler.defaultMaximumUDPReplySize,
        logQueries: Bool = false,
        metrics: DNSProxyMetrics = DNSProxyMetrics(),
        logger: Logger = Logger(label: "dotproxy.handler")
    ) {
        self.transport = transport
        self.accessControl = accessControl
        self.deniedAction = deniedAction == .drop ? .drop : .refuse
        self.rateLimiter = rateLimiter
        self.countsDecisions = !(rateLimiter is UnlimitedQueryRateLimiter)
        self.cache = cache
        self.staleReplyDelay = staleReplyDelay
        self.queryTimeout = queryTimeout
        self.maximumUDPReplySize = min(max(maximumUDPReplySize, Int(EDNSRecord.minimumUDPPayloadSize)), Int(UInt16.max))
        self.logQueries = logQueries
        self.metrics = metrics
        self.logger = logger
    }

    /// The counters so far.
    public var counters: Counters { countersBox.withLockedValue { $0 } }

    /// The default cap on UDP replies: 1,232 octets, which fits an IPv6 packet on a 1,280-octet link
    /// without fragments (DNS Flag Day 2020; Unbound's and Knot Resolver's default too).
    public static let defaultMaximumUDPReplySize = 1232

    /// The largest UDP reply this query may get: its EDNS size, at most the configured cap.
    private func udpLimit(for view: DNSMessageView) -> Int {
        min(view.clientUDPPayloadSize, maximumUDPReplySize)
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
        let message = query.message
        let allocator = ByteBufferAllocator()
        guard message.readableBytes >= DNSHeader.wireLength,
            let flags = message.getInteger(at: message.readerIndex + 2, as: UInt16.self), flags & DNSHeader.Flag.qr == 0
        else {
            countersBox.withLockedValue { $0.dropped += 1 }
            metrics.malformedDropped.increment()
            return .now(nil)
        }
        if let client = ClientAddress(query.client) {
            guard accessControl.allows(client) else {
                countersBox.withLockedValue { $0.denied += 1 }
                metrics.accessDenied.increment()
                return .now(
                    deniedAction == .drop
                        ? nil : DNSResponseBuilder.reply(to: message, view: nil, rcode: .refused, allocator: allocator)
                )
            }
            let decision = rateLimiter.decide(for: client, transport: query.transport, now: now)
            if countsDecisions { metrics.recordRateLimit(decision) }
            if decision != .admit {
                switch decision {
                case .drop: return .now(nil)
                case .slip:
                    return .now(
                        DNSResponseBuilder.reply(
                            to: message,
                            view: nil,
                            rcode: .noError,
                            truncated: true,
                            allocator: allocator
                        )
                    )
                default:
                    return .now(DNSResponseBuilder.reply(to: message, view: nil, rcode: .refused, allocator: allocator))
                }
            }
        }
        let view: DNSMessageView
        do {
            view = try DNSMessageView(message)
        } catch {
            countersBox.withLockedValue { $0.formatErrors += 1 }
            metrics.malformedAnswered.increment()
            logger.debug("malformed query", metadata: ["error": "\(error)", "transport": "\(query.transport)"])
            return .now(DNSResponseBuilder.reply(to: message, view: nil, rcode: .formatError, allocator: allocator))
        }
        guard view.opcode == .query else {
            countersBox.withLockedValue { $0.notImplemented += 1 }
            return .now(DNSResponseBuilder.reply(to: message, view: view, rcode: .notImplemented, allocator: allocator))
        }
        if let version = view.ednsVersion, version != 0 {
            countersBox.withLockedValue { $0.badVersion += 1 }
            return .now(DNSResponseBuilder.reply(to: message, view: view, rcode: .badVersion, allocator: allocator))
        }
        guard view.questionCount == 1 else {
            countersBox.withLockedValue { $0.formatErrors += 1 }
            metrics.malformedAnswered.increment()
            return .now(DNSResponseBuilder.reply(to: message, view: nil, rcode: .formatError, allocator: allocator))
        }
        metrics.recordQuery(type: view.questionType, transport: query.transport)
        if logQueries {
            logger.info(
                "query",
                metadata: [
                    "name": "\(view.questionName(in: message)?.description ?? "?")",
                    "type": "\(view.questionType?.description ?? "?")",
                    "client": "\(query.client.endpointDescription)", "transport": "\(query.transport)",
                ]
            )
        }
        if let hit = cache.lookup(message, view: view, now: now) {
            metrics.cacheHits.increment()
            if cache.claimPrefetch(message, view: view, now: now) {
                // Refresh in the background; the new reply replaces the entry when it arrives. Like a
                // miss, the refresh outlives this call, so it keeps a copy of the query.
                forward(allocator.buffer(buffer: message), view: view, on: eventLoop) { _ in }
            }
            return .now(fitCached(hit, query: query, view: view, allocator: allocator))
        }
        metrics.cacheMisses.increment()
        // A miss outlives this call, so it keeps a copy of the query, not the listener's read buffer
        // the query may be a slice of (see `DNSClientQuery.message`).
        var query = query
        query.message = allocator.buffer(buffer: message)
        let racing = cache.servesStale && staleReplyDelay < queryTimeout
        let miss = Miss(
            query: query,
            view: view,
            start: now,
            replied: eventLoop.makePromise(of: ByteBuffer?.self),
            counted: !racing
        )
        // Identical misses wait for the query already in flight instead of each going upstream. The
        // wait is bounded by that query's deadline. The key is a hash, so a miss joins only a leader
        // that asks the same question; after a collision it goes upstream on its own, unregistered.
        let key = DNSCacheKey(query.message, view: view)
        let role: Miss.Role =
            key.map { key in
                inFlight.withLockedValue { table -> Miss.Role in
                    guard let leader = table[key] else {
                        table[key] = miss
                        return .leader
                    }
                    guard miss.asksSameQuestion(as: leader) else { return .alone }
                    leader.followers.append(miss)
                    return .follower
                }
            } ?? .alone
        if role == .follower {
            countersBox.withLockedValue { $0.coalesced += 1 }
            metrics.coalesced.increment()
        } else {
            forward(query.message, view: view, on: eventLoop) { [self] result in
                // Only a leader is in the table; it takes its followers out with it.
                let followers: [Miss] =
                    role != .leader
                    ? []
                    : inFlight.withLockedValue { table in
                        if let key { table.removeValue(forKey: key) }
                        return miss.followers
                    }
                complete(miss, with: result)
                for follower in followers {
                    let loop = follower.replied.futureResult.eventLoop
                    if loop.inEventLoop {
                        complete(follower, with: result)
                    } else {
                        loop.execute { self.complete(follower, with: result) }
                    }
                }
            }
        }
        guard racing else { return .later(miss.replied.futureResult) }
        return .later(
            raceWithStaleAnswer(
                miss.replied.futureResult,
                query: query,
                view: view,
                start: now,
                on: eventLoop,
                allocator: allocator
            )
        )
    }

    /// One cache miss between the client and the upstream: what its callbacks need, in one object,
    /// so that each captures one reference rather than the query, its view and its promise apiece.
    final class Miss: @unchecked Sendable {
        // Immutable but for `followers`, which only changes under the handler's `inFlight` lock.
        let query: DNSClientQuery
        let view: DNSMessageView
        let start: NIODeadline
        let replied: EventLoopPromise<ByteBuffer?>
        /// Whether the reply is counted when completed (no race with a stale answer decides later).
        let counted: Bool
        /// Identical misses that arrived while this one was in flight.
        var followers: [Miss] = []

        /// How a miss relates to the table of misses in flight.
        enum Role {
            /// Registered under its key; answers its followers.
            case leader
            /// Waits for a leader's answer.
            case follower
            /// Not registered: no key, or its key's leader asks another question.
            case alone
        }

        init(
            query: DNSClientQuery,
            view: DNSMessageView,
            start: NIODeadline,
            replied: EventLoopPromise<ByteBuffer?>,
            counted: Bool
        ) {
            self.query = query
            self.view = view
            self.start = start
            self.replied = replied
            self.counted = counted
        }

        /// Whether `leader`'s answer also answers this miss: the same question (name in any case,
        /// type, class) and the same DO and CD bits, which is everything its cache key hashes.
        func asksSameQuestion(as leader: Miss) -> Bool {
            view.dnssecOK == leader.view.dnssecOK && view.checkingDisabled == leader.view.checkingDisabled
                && view.questionMatches(leader.view, in: query.message, otherBuffer: leader.query.message)
        }
    }

    /// Completes a miss with the client's reply for the upstream outcome; call on its event loop.
    private func complete(_ miss: Miss, with result: Result<UpstreamAnswer, any Error>) {
        let answer = reply(to: miss.query, view: miss.view, from: result, allocator: ByteBufferAllocator())
        if miss.counted { recordForwarded(answer, transport: miss.query.transport, since: miss.start) }
        miss.replied.succeed(answer)
    }

    private func recordForwarded(_ reply: ByteBuffer?, transport: DNSClientTransport, since start: NIODeadline) {
        metrics.recordResponse(reply)
        metrics.recordForwardedDuration(transport: transport, since: start)
    }

    /// The client's reply for an upstream outcome: the answer fitted to the client, or a stale answer
    /// or SERVFAIL after a failure.
    private func reply(
        to query: DNSClientQuery,
        view: DNSMessageView,
        from result: Result<UpstreamAnswer, any Error>,
        allocator: ByteBufferAllocator
    )
        -> ByteBuffer
    {
        switch result {
        case .success(let answer):
            let fitted = DNSResponseBuilder.fit(
                reply: answer.reply,
                replyView: answer.view,
                query: query.message,
                queryView: view,
                transport: query.transport,
                udpLimit: udpLimit(for: view),
                allocator: allocator
            )
            if fitted.truncated {
                countersBox.withLockedValue { $0.truncated += 1 }
                metrics.truncated.increment()
            }
            return fitted.message
        case .failure(let error):
            logger.debug("upstream failure", metadata: ["error": "\(error)"])
            if let stale = cache.lookupStale(query.message, view: view, now: .now()) {
                metrics.cacheStaleAnswers.increment()
                return fitCached(stale, query: query, view: view, allocator: allocator)
            }
            countersBox.withLockedValue { $0.serverFailures += 1 }
            let reason =
                (error as? UpstreamError)?.extendedDNSError
                ?? ExtendedDNSError(code: .networkError, text: "\(type(of: error))")
            return DNSResponseBuilder.reply(
                to: query.message,
                view: view,
                rcode: .serverFailure,
                extendedError: reason,
                allocator: allocator
            )
        }
    }

    /// Fits a reply built by the cache to the client's UDP size.
    private func fitCached(
        _ hit: ByteBuffer,
        query: DNSClientQuery,
        view: DNSMessageView,
        allocator: ByteBufferAllocator
    ) -> ByteBuffer {
        guard query.transport.isUDP, hit.readableBytes > udpLimit(for: view) else { return hit }
        countersBox.withLockedValue { $0.truncated += 1 }
        metrics.truncated.increment()
        let rcode = DNSResponseCode(
            truncating: UInt16(hit.getInteger(at: hit.readerIndex + 3, as: UInt8.self) ?? 0) & 0x0F
        )
        return DNSResponseBuilder.reply(
            to: query.message,
            view: view,
            rcode: rcode,
            truncated: true,
            allocator: allocator
        )
    }

    /// With a serve-stale cache, answers from a stale entry if the upstream has not answered within
    /// the client response timer; whichever comes first is sent, the other is discarded.
    private func raceWithStaleAnswer(
        _ replied: EventLoopFuture<ByteBuffer?>,
        query: DNSClientQuery,
        view: DNSMessageView,
        start: NIODeadline,
        on eventLoop: any EventLoop,
        allocator: ByteBufferAllocator
    ) -> EventLoopFuture<ByteBuffer?> {
        let result = eventLoop.makePromise(of: ByteBuffer?.self)
        let done = NIOLockedValueBox(false)
        let timer = eventLoop.scheduleTask(in: staleReplyDelay) { [self] in
            guard !done.withLockedValue({ $0 }), let stale = cache.lookupStale(query.message, view: view, now: .now()),
                done.withLockedValue({ done in
                    defer { done = true }
                    return !done
                })
            else { return }
            metrics.cacheStaleAnswers.increment()
            let reply = fitCached(stale, query: query, view: view, allocator: allocator)
            recordForwarded(reply, transport: query.transport, since: start)
            result.succeed(reply)
        }
        replied.whenSuccess { [self] reply in
            guard
                done.withLockedValue({ done in
                    defer { done = true }
                    return !done
                })
            else { return }
            timer.cancel()
            recordForwarded(reply, transport: query.transport, since: start)
            result.succeed(reply)
        }
        return result.futureResult
    }

    /// The largest TTL RFC 2181 §8 allows, 2³¹ - 1.
    static let largestTTL = UInt32(Int32.max)

    /// A validated upstream reply, shared by every client waiting for the same question.
    struct UpstreamAnswer: Sendable {
        var reply: ByteBuffer
        var view: DNSMessageView
    }

    /// Sends the query upstream, checks that the reply answers it, offers the reply to the cache, and
    /// calls `completion` with the outcome on the transport's callback.
    private func forward(
        _ message: ByteBuffer,
        view: DNSMessageView,
        on eventLoop: any EventLoop,
        completion: @escaping @Sendable (Result<UpstreamAnswer, any Error>) -> Void
    ) {
        let upstreamQuery = DNSResponseBuilder.upstreamQuery(
            from: message,
            view: view,
            allocator: ByteBufferAllocator()
        )
        transport.send(upstreamQuery, deadline: .now() + queryTimeout, on: eventLoop) { [cache, transport] result in
            switch result {
            case .success(let reply):
                guard let replyView = try? DNSMessageView(reply), replyView.isResponse, replyView.id == view.id,
                    replyView.questionMatches(view, in: reply, otherBuffer: message)
                else {
                    let question =
                        "\(view.questionName(in: message)?.description ?? "?") \(view.questionType?.description ?? "?")"
                    completion(
                        .failure(
                            UpstreamError(
                                .malformedReply,
                                upstream: "\(type(of: transport))",
                                detail:
                                    "the reply (\(reply.readableBytes) octets) does not answer query ID \(view.id) for \(question)"
                            )
                        )
                    )
                    return
                }
                // TTLs with the top bit set become 0 (RFC 2181 §8), and none outlives the cache's entry.
                var reply = reply
                replyView.capTTLs(in: &reply, ceiling: cache.longestTTL(for: reply, view: replyView) ?? Self.largestTTL)
                cache.store(reply, view: replyView, query: message, queryView: view, now: .now())
                completion(.success(UpstreamAnswer(reply: reply, view: replyView)))
            case .failure(let error):
                completion(.failure(error))
            }
        }
    }
}
