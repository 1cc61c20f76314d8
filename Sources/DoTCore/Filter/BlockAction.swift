import NIOCore

/// What a blocked query is answered with.
public enum BlockAction: Hashable, Sendable, CustomStringConvertible {
    /// NXDOMAIN: the name does not exist (the default).
    case nxdomain
    /// REFUSED.
    case refused
    /// The null address: 0.0.0.0 for A, :: for AAAA, and no data for other types.
    case nullAddress
    /// These addresses for A and AAAA (of the query's family; no data when there is none), no data for
    /// other types: a page that explains the block, say.
    case addresses([IPv4Address], [IPv6Address])

    public var description: String {
        switch self {
        case .nxdomain: "nxdomain"
        case .refused: "refused"
        case .nullAddress: "null"
        case .addresses(let v4, let v6): (v4.map(\.description) + v6.map(\.description)).joined(separator: ",")
        }
    }

    /// The reply to `query` under this action: the query's ID and question, RD copied, RA set; answer
    /// records with `ttl`; and for a client that sent EDNS, the proxy's OPT with an Extended DNS Error
    /// (15, Blocked) saying so.
    public func reply(to query: ParsedDNSMessage, ttl: UInt32) -> ByteBuffer {
        let view = query.view
        let reason = ExtendedDNSError(code: .blocked, text: "blocked by a filter list")
        switch self {
        case .nxdomain:
            return DNSResponseBuilder.reply(to: query.buffer, view: view, rcode: .nameError, extendedError: reason)
        case .refused:
            return DNSResponseBuilder.reply(to: query.buffer, view: view, rcode: .refused, extendedError: reason)
        case .nullAddress:
            return Self.answer(query, v4: [Self.nullIPv4], v6: [Self.nullIPv6], ttl: ttl, reason: reason)
        case .addresses(let v4, let v6):
            return Self.answer(query, v4: v4, v6: v6, ttl: ttl, reason: reason)
        }
    }

    private static let nullIPv4 = IPv4Address(0, 0, 0, 0)
    private static let nullIPv6 = IPv6Address(octets: [UInt8](repeating: 0, count: 16))!

    /// NOERROR with the addresses of the query's type (none for other types: no data).
    private static func answer(
        _ query: ParsedDNSMessage,
        v4: [IPv4Address],
        v6: [IPv6Address],
        ttl: UInt32,
        reason: ExtendedDNSError
    ) -> ByteBuffer {
        var reply = DNSResponseBuilder.reply(to: query.buffer, view: query.view, rcode: .noError)
        let records: [[UInt8]]
        switch query.view.questionType {
        case .a?: records = v4.map { withUnsafeBytes(of: $0.rawValue.bigEndian) { Array($0) } }
        case .aaaa?: records = v6.map(\.octets)
        default: records = []
        }
        // The header and question only; the answers go after the question, then the OPT again.
        guard let questionEnd = query.view.questionNameRange.map({ $0.upperBound + 4 }) else { return reply }
        reply.moveWriterIndex(to: reply.readerIndex + questionEnd)
        for rdata in records {
            reply.writeMultipleIntegers(
                UInt16(0xC00C),
                query.view.questionType!.rawValue,
                UInt16(1),
                ttl,
                UInt16(rdata.count)
            )
            reply.writeBytes(rdata)
        }
        reply.setInteger(UInt16(records.count), at: reply.readerIndex + 6)
        reply.setInteger(UInt16(query.view.optRecordOffset == nil ? 0 : 1), at: reply.readerIndex + 10)
        if query.view.optRecordOffset != nil {
            EDNSRecord.writeProxyOPT(into: &reply, dnssecOK: query.view.dnssecOK, extendedError: reason)
        }
        return reply
    }
}
