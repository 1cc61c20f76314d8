import NIOCore

/// Sends a query upstream and offers the reply, which the transport has matched to the query, to the
/// cache.
///
/// The upstream query carries the proxy's own OPT (DO as the client asked, no client options: EDNS
/// is hop by hop). TTLs with the top bit set become 0 (RFC 2181 §8), and no TTL exceeds the cache's
/// lifetime for the reply (``DNSResponseCache/longestTTL(for:)``), so a client never holds an answer
/// longer than the cache would.
struct UpstreamForwarder: Sendable {
    let transport: any UpstreamTransport
    let cache: any DNSResponseCache
    /// The deadline for an upstream reply.
    let queryTimeout: TimeAmount

    /// The largest TTL RFC 2181 §8 allows, 2³¹ - 1.
    static let largestTTL = UInt32(Int32.max)

    /// Sends `query` upstream and calls `completion` with the answer (the upstream's reply, TTLs
    /// capped) or the failure, on the transport's callback. The upstream query is a new buffer, so
    /// `query` may be a slice of a read buffer: nothing holds it once this returns.
    func forward(
        _ query: ParsedDNSMessage,
        key: DNSCacheKey,
        on eventLoop: any EventLoop,
        completion: @escaping @Sendable (Result<ParsedDNSMessage, UpstreamError>) -> Void
    ) {
        let upstreamQuery = DNSResponseBuilder.upstreamQuery(from: query, allocator: ByteBufferAllocator())
        transport.send(upstreamQuery, deadline: .now() + queryTimeout, on: eventLoop) { [cache] result in
            guard case .success(var reply) = result else { return completion(result) }
            reply.capTTLs(ceiling: cache.longestTTL(for: reply) ?? Self.largestTTL)
            cache.store(reply, key: key, now: .now())
            completion(.success(reply))
        }
    }
}
