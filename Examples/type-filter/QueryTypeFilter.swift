import DoTCore
import NIOCore

/// A `QueryFilter` written outside the library: refuses queries of the types it is given (ANY, say,
/// which amplification attacks favour, or HTTPS records on a network that wants them gone), and
/// passes the rest on. It shows the parts a filter has: read the parsed query, decide without
/// blocking the event loop, and build the reply with the library's wire API.
struct QueryTypeFilter: QueryFilter {
    let refused: Set<DNSRecordType>

    func decide(_ query: ParsedDNSMessage, client: SocketAddress) -> QueryFilterDecision {
        guard let type = query.view.questionType, refused.contains(type) else { return .pass }
        // REFUSED, with the query's ID and question, and an EDE 17 (Filtered) for an EDNS client.
        var reply = DNSMessage(header: query.view.header, questions: [])
        if let decoded = try? DNSMessage(decoding: query.buffer) {
            reply = DNSMessage(header: decoded.header, questions: decoded.questions)
            if decoded.edns != nil {
                reply.edns = EDNSRecord(
                    options: [ExtendedDNSError(code: .filtered, text: "\(type) queries are refused here").option]
                )
            }
        }
        reply.header.isResponse = true
        reply.header.recursionAvailable = true
        reply.header.responseCode = .refused
        guard let bytes = try? reply.encoded() else { return .blocked(reply: nil, list: "types", rule: "\(type)") }
        return .blocked(reply: bytes, list: "types", rule: "\(type)")
    }
}
