import NIOCore

/// The EDNS options of a query that belong to its connection rather than to the question, and that
/// the connection, not the query handler, answers: TCP keepalive (RFC 7828) and, over TLS, padding
/// (RFC 7830, RFC 8467).
///
/// A client that sends an empty edns-tcp-keepalive option over TCP or TLS is told how long the proxy
/// keeps an idle connection open; a client that pads its query over TLS gets its reply padded to a
/// multiple of ``replyPaddingBlock`` octets, so that the reply's length says little about the answer.
/// Both are added to the OPT record the reply already carries (every reply to an EDNS query has one,
/// last in the message); a reply without one is sent as it is.
struct StreamQueryOptions: Equatable {
    /// The client sent edns-tcp-keepalive.
    var keepalive = false
    /// The client sent padding.
    var padding = false

    /// The block replies are padded to (RFC 8467 §4.1, "Block-Length Padding": 468 octets).
    static let replyPaddingBlock = 468

    /// The options `query` asks for; nothing when it has no additional records or cannot be read
    /// (the query handler answers that one).
    init(query: ByteBuffer) {
        guard let additional = query.getInteger(at: query.readerIndex + 10, as: UInt16.self), additional > 0,
            let view = try? DNSMessageView(query), let optOffset = view.optRecordOffset,
            let rdLength = query.getInteger(at: query.readerIndex + optOffset + 9, as: UInt16.self)
        else { return }
        let rdata = query.readerIndex + optOffset + 11
        DoTQueryPadding.forEachOption(in: query, rdata: rdata..<rdata + Int(rdLength)) { code, _ in
            if code == EDNSOptionCode.tcpKeepalive.rawValue { keepalive = true }
            if code == EDNSOptionCode.padding.rawValue { padding = true }
        }
    }

    init(keepalive: Bool = false, padding: Bool = false) {
        self.keepalive = keepalive
        self.padding = padding
    }

    /// Whether ``amend(_:keepaliveTimeout:pads:)`` changes anything.
    var isEmpty: Bool { !keepalive && !padding }

    /// `reply` with the keepalive option (`keepaliveTimeout` in units of 100 ms) when the query asked
    /// for it, and padding when the query had some and `pads` (the connection is encrypted).
    ///
    /// The options go at the end of the reply's OPT record, which must be its last record; otherwise,
    /// or when the result would not fit a 65,535-octet frame, `reply` is returned unchanged.
    func amend(_ reply: ByteBuffer, keepaliveTimeout: UInt16, pads: Bool) -> ByteBuffer {
        let addsPadding = padding && pads
        guard keepalive || addsPadding, let view = try? DNSMessageView(reply), let optOffset = view.optRecordOffset,
            view.optRecordIsLast, view.length == reply.readableBytes
        else { return reply }
        let rdLengthAt = optOffset + 9
        guard let rdLength = reply.getInteger(at: reply.readerIndex + rdLengthAt, as: UInt16.self) else {
            return reply
        }
        var length = reply.readableBytes + (keepalive ? 6 : 0)
        var paddingLength = 0
        if addsPadding {
            length += 4
            paddingLength = (Self.replyPaddingBlock - length % Self.replyPaddingBlock) % Self.replyPaddingBlock
            length += paddingLength
        }
        guard length <= Int(UInt16.max) else { return reply }
        var out = ByteBufferAllocator().buffer(capacity: length)
        out.writeImmutableBuffer(reply)
        if keepalive {
            out.writeMultipleIntegers(EDNSOptionCode.tcpKeepalive.rawValue, UInt16(2), keepaliveTimeout)
        }
        if addsPadding {
            out.writeMultipleIntegers(EDNSOptionCode.padding.rawValue, UInt16(paddingLength))
            out.writeRepeatingByte(0, count: paddingLength)
        }
        out.setInteger(rdLength + UInt16(length - reply.readableBytes), at: rdLengthAt)
        return out
    }
}
