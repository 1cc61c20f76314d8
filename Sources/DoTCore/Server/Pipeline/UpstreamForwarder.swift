import NIOCore

/// A validated upstream reply, shared by every client waiting for the same question.
struct UpstreamAnswer: Sendable {
    var reply: ByteBuffer
    var view: DNSMessageView
}

/// Sends a query upstream, checks once that the reply answers it, and offers it to the cache.
///
/// The upstream query carries the proxy's own OPT (DO as the client asked, no client options: EDNS
/// is hop by hop). A reply whose ID or question does not match is a failure, never delivered. TTLs
/// with the top bit set become 0 (RFC 2181 §8), and no TTL exceeds the cache's lifetime for the
/// reply (``DNSResponseCache/longestTTL(for:view:)``), so a client never holds an answer longer than
/// the cache would.
struct UpstreamForwarder: Sendable {
    let transport: any UpstreamTransport
    let cache: any DNSResponseCache
    /// The deadline for an upstream reply.
    let queryTimeout: TimeAmount

    /// The largest TTL RFC 2181 §8 allows, 2³¹ - 1.
    static let largestTTL = UInt32(Int32.max)

    /// Sends `message` upstream and calls `completion` with the validated answer or the failure, on
    /// the transport's callback.
    func forward(
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
            case .success(var reply):
                guard let replyView = try? DNSMessageView(reply), replyView.isResponse, replyView.id == view.id,
                    replyView.questionMatches(view, in: reply, otherBuffer: message)
                else {
                    let question =
                        "\(view.questionName(in: message)?.description ?? "?") \(view.questionType?.description ?? "?")"
                    let detail =
                        "the reply (\(reply.readableBytes) octets) does not answer query ID \(view.id) for \(question)"
                    completion(
                        .failure(UpstreamError(.malformedReply, upstream: "\(type(of: transport))", detail: detail))
                    )
                    return
                }
                replyView.capTTLs(in: &reply, ceiling: cache.longestTTL(for: reply, view: replyView) ?? Self.largestTTL)
                cache.store(reply, view: replyView, query: message, queryView: view, now: .now())
                completion(.success(UpstreamAnswer(reply: reply, view: replyView)))
            case .failure(let error):
                completion(.failure(error))
            }
        }
    }
}
