import NIOCore

/// Builds the replies the proxy writes itself (errors, truncated answers) and fits upstream replies
/// to the client, straight from wire bytes.
enum DNSResponseBuilder {
    /// A reply carrying only the header and the question of `query` (and an OPT record when the
    /// client sent one), with `rcode` and the given flags.
    ///
    /// - Parameters:
    ///   - query: The query's bytes; at least a 12-octet header.
    ///   - view: The query's view, if it could be parsed; without one the question is left out.
    ///   - truncated: Whether to set TC.
    ///   - extendedError: An Extended DNS Error for the OPT record, when there is one (RFC 8914).
    static func reply(
        to query: ByteBuffer,
        view: DNSMessageView?,
        rcode: DNSResponseCode,
        truncated: Bool = false,
        extendedError: ExtendedDNSError? = nil,
        allocator: ByteBufferAllocator = ByteBufferAllocator()
    ) -> ByteBuffer {
        let base = query.readerIndex
        let id = query.getInteger(at: base, as: UInt16.self) ?? 0
        let queryFlags = query.getInteger(at: base + 2, as: UInt16.self) ?? 0
        // Keep the opcode, RD and CD of the query; set QR and RA.
        var flags = queryFlags & (0x7800 | DNSHeader.Flag.rd | DNSHeader.Flag.cd)
        flags |= DNSHeader.Flag.qr | DNSHeader.Flag.ra | rcode.headerBits
        if truncated { flags |= DNSHeader.Flag.tc }
        let question = view?.questionNameRange.flatMap { range in
            query.getSlice(at: base + range.lowerBound, length: range.count + 4)
        }
        let withOPT = view?.optRecordOffset != nil
        var out = allocator.buffer(
            capacity: 12 + (question?.readableBytes ?? 0)
                + (withOPT ? EDNSRecord.proxyOPTLength + 6 + (extendedError?.text.utf8.count ?? 0) : 0)
        )
        out.writeMultipleIntegers(
            id,
            flags,
            UInt16(question == nil ? 0 : 1),
            UInt16(0),
            UInt16(0),
            UInt16(withOPT ? 1 : 0)
        )
        if let question { out.writeImmutableBuffer(question) }
        if withOPT {
            EDNSRecord.writeProxyOPT(
                into: &out,
                dnssecOK: view?.dnssecOK ?? false,
                extendedRCode: rcode.extendedBits,
                extendedError: extendedError
            )
        }
        return out
    }

    /// The query to send upstream: the client's header and question with the proxy's own OPT (EDNS is
    /// hop-by-hop): DO as the client asked, no client options (cookies, client subnet) passed on. Its
    /// view is derived from the client's, not parsed again.
    static func upstreamQuery(from query: ParsedDNSMessage, allocator: ByteBufferAllocator) -> ParsedDNSMessage {
        let questionEnd = query.view.answerSectionOffset
        var out = allocator.buffer(capacity: questionEnd + EDNSRecord.proxyOPTLength)
        out.writeImmutableBuffer(query.buffer.getSlice(at: query.buffer.readerIndex, length: questionEnd)!)
        out.setMultipleIntegers(UInt16(0), UInt16(0), UInt16(1), at: 6)
        EDNSRecord.writeProxyOPT(into: &out, dnssecOK: query.view.dnssecOK)
        var view = query.view
        view.answerCount = 0
        view.authorityCount = 0
        view.additionalCount = 1
        view.additionalSectionOffset = questionEnd
        view.optRecordOffset = questionEnd
        view.optRecordIsLast = true
        view.ednsUDPPayloadSize = EDNSRecord.proxyUDPPayloadSize
        view.extendedResponseCode = 0
        view.ednsVersion = 0
        view.length = out.readableBytes
        return ParsedDNSMessage(buffer: out, view: view)
    }

    /// The upstream reply rewritten for the client: the client's ID and question bytes (so the case
    /// matches), the upstream's OPT replaced by the proxy's (or removed for a client without EDNS),
    /// and over UDP, truncated with TC set when longer than `udpLimit` (`truncated` says so).
    static func fit(
        reply: ByteBuffer,
        replyView: DNSMessageView,
        query: ByteBuffer,
        queryView: DNSMessageView,
        clientProtocol: ClientProtocol,
        udpLimit: Int,
        allocator: ByteBufferAllocator
    ) -> (message: ByteBuffer, truncated: Bool) {
        let base = reply.readerIndex
        let bodyEnd = replyView.optRecordOffset ?? replyView.length
        let clientWantsOPT = queryView.optRecordOffset != nil
        // The OPT record must be the last record to be cut off cleanly; otherwise keep everything but
        // rebuild nothing (rare: a TSIG after OPT, which a forwarder cannot pass on anyway).
        let optIsLast = replyView.optRecordOffset == nil || replyView.optRecordIsLast
        let keepUntil = optIsLast ? bodyEnd : replyView.length
        var out = allocator.buffer(capacity: keepUntil + (clientWantsOPT ? EDNSRecord.proxyOPTLength : 0))
        out.writeImmutableBuffer(reply.getSlice(at: base, length: keepUntil)!)
        var additionalCount = replyView.additionalCount
        if optIsLast && replyView.optRecordOffset != nil { additionalCount -= 1 }
        if clientWantsOPT && (optIsLast || replyView.optRecordOffset == nil) {
            EDNSRecord.writeProxyOPT(
                into: &out,
                dnssecOK: queryView.dnssecOK,
                extendedRCode: replyView.extendedResponseCode
            )
            additionalCount += 1
        }
        out.setInteger(queryView.id, at: 0)
        out.setInteger(additionalCount, at: 10)
        // Copy the client's question name over the upstream's: same name, the client's case.
        if let clientName = queryView.questionNameRange, let upstreamName = replyView.questionNameRange,
            clientName.count == upstreamName.count,
            let name = query.getSlice(at: query.readerIndex + clientName.lowerBound, length: clientName.count)
        {
            out.setBuffer(name, at: upstreamName.lowerBound)
        }
        if clientProtocol.isUDP && out.readableBytes > udpLimit {
            return (
                Self.reply(
                    to: query,
                    view: queryView,
                    rcode: replyView.responseCode,
                    truncated: true,
                    allocator: allocator
                ), true
            )
        }
        return (out, false)
    }
}
