import NIOCore

/// The last stage: the reply as this client may receive it.
///
/// - An upstream answer gets the query's ID and question case, and EDNS hop by hop: the proxy's OPT
///   only if the client sent one (``DNSResponseBuilder/fit(reply:replyView:query:queryView:transport:udpLimit:allocator:)``).
/// - Over UDP, a reply larger than the client's EDNS size (512 without EDNS), or than the configured
///   cap whatever the client asked for, is replaced by an empty reply with TC set, the question and
///   OPT kept, so the client retries over TCP. A small query can then never draw a large reply, and
///   replies are never IP fragments.
/// - An upstream failure becomes SERVFAIL, with an Extended DNS Error (RFC 8914) for EDNS clients that
///   says why (``UpstreamError/extendedDNSError``).
struct ReplyShaper: Sendable {
    /// The largest UDP reply, whatever the client's EDNS size.
    let maximumUDPReplySize: Int
    let metrics: DNSProxyMetrics

    /// The largest UDP reply this query may get: its EDNS size, at most the configured cap.
    func udpLimit(for view: DNSMessageView) -> Int {
        min(view.clientUDPPayloadSize, maximumUDPReplySize)
    }

    /// An upstream answer, fitted to the client.
    func reply(to query: ParsedQuery, answer: ParsedDNSMessage) -> ByteBuffer {
        let fitted = DNSResponseBuilder.fit(
            reply: answer.buffer,
            replyView: answer.view,
            query: query.message.buffer,
            queryView: query.view,
            clientProtocol: query.clientProtocol,
            udpLimit: udpLimit(for: query.view),
            allocator: ByteBufferAllocator()
        )
        if fitted.truncated { metrics.truncated.increment() }
        return fitted.message
    }

    /// A reply the cache built for this query (ID, case and OPT already the client's), truncated if it
    /// does not fit the client's UDP size.
    func reply(to query: ParsedQuery, cached: ByteBuffer) -> ByteBuffer {
        guard query.clientProtocol.isUDP, cached.readableBytes > udpLimit(for: query.view) else { return cached }
        metrics.truncated.increment()
        let rcode = DNSResponseCode(
            truncating: UInt16(cached.getInteger(at: cached.readerIndex + 3, as: UInt8.self) ?? 0) & 0x0F
        )
        return DNSResponseBuilder.reply(
            to: query.message.buffer,
            view: query.view,
            rcode: rcode,
            truncated: true,
            allocator: ByteBufferAllocator()
        )
    }

    /// SERVFAIL for an upstream failure, saying why to EDNS clients.
    func serverFailure(to query: ParsedQuery, error: any Error) -> ByteBuffer {
        let reason =
            (error as? UpstreamError)?.extendedDNSError
            ?? ExtendedDNSError(code: .networkError, text: "\(type(of: error))")
        return DNSResponseBuilder.reply(
            to: query.message.buffer,
            view: query.view,
            rcode: .serverFailure,
            extendedError: reason,
            allocator: ByteBufferAllocator()
        )
    }
}
