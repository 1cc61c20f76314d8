import Logging
import NIOCore

/// A client query that passed admission and parsing: what travels through the later stages. It is
/// parsed once, and its cache key computed once, here; the stages after read them.
struct ParsedQuery: Sendable {
    /// The query: one question, opcode QUERY, EDNS version 0 or none.
    var message: ParsedDNSMessage
    /// What the cache files its answer under, and what identical misses are coalesced by.
    let key: DNSCacheKey
    /// Who sent it.
    let client: SocketAddress
    /// How it arrived.
    let clientProtocol: ClientProtocol
    /// When the query arrived; durations and cache ages count from here.
    let arrival: NIODeadline

    var view: DNSMessageView { message.view }
}

/// The second stage: the query must be one the proxy can forward. What it cannot read gets FORMERR
/// (header only); an opcode other than QUERY gets NOTIMP; an EDNS version other than 0 gets BADVERS
/// with the proxy's version-0 OPT (RFC 6891 §6.1.3); zero or several questions get FORMERR.
struct QueryParser: Sendable {
    let metrics: DNSProxyMetrics
    let logger: Logger

    /// What became of a query in parsing.
    enum Outcome {
        case parsed(ParsedQuery)
        /// Answered here, with the error reply.
        case answered(ByteBuffer)
    }

    func parse(_ query: DNSClientQuery, now: NIODeadline) -> Outcome {
        let message = query.message
        let view: DNSMessageView
        do {
            view = try DNSMessageView(message)
        } catch {
            metrics.malformedAnswered.increment()
            logger.debug("malformed query", metadata: ["error": "\(error)", "protocol": "\(query.clientProtocol)"])
            return .answered(Self.reply(to: message, view: nil, rcode: .formatError))
        }
        guard view.opcode == .query else {
            return .answered(Self.reply(to: message, view: view, rcode: .notImplemented))
        }
        if let version = view.ednsVersion, version != 0 {
            return .answered(Self.reply(to: message, view: view, rcode: .badVersion))
        }
        guard view.questionCount == 1, let key = DNSCacheKey(message, view: view) else {
            metrics.malformedAnswered.increment()
            return .answered(Self.reply(to: message, view: nil, rcode: .formatError))
        }
        return .parsed(
            ParsedQuery(
                message: ParsedDNSMessage(buffer: message, view: view),
                key: key,
                client: query.client,
                clientProtocol: query.clientProtocol,
                arrival: now
            )
        )
    }

    private static func reply(to message: ByteBuffer, view: DNSMessageView?, rcode: DNSResponseCode) -> ByteBuffer {
        DNSResponseBuilder.reply(to: message, view: view, rcode: rcode, allocator: ByteBufferAllocator())
    }
}
