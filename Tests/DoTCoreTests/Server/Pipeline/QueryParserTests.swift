import Logging
import NIOCore
import Testing

@testable import DoTCore

/// The second stage, alone: the query is parsed once, or answered with the error that says why not.
struct QueryParserTests {
    static let client = try! SocketAddress(ipAddress: "127.0.0.1", port: 4000)

    func parse(_ message: DNSMessage, recorded: RecordedMetrics) throws -> QueryParser.Outcome {
        try parse(message.encoded(), recorded: recorded)
    }

    func parse(_ bytes: ByteBuffer, recorded: RecordedMetrics) -> QueryParser.Outcome {
        QueryParser(metrics: recorded.metrics, logger: Logger(label: "test"))
            .parse(DNSClientQuery(message: bytes, client: Self.client, clientProtocol: .udp), now: .now())
    }

    func rcode(_ outcome: QueryParser.Outcome) throws -> DNSResponseCode? {
        guard case .answered(let reply) = outcome else { return nil }
        return try DNSMessage(decoding: reply).header.responseCode
    }

    @Test func aGoodQueryIsParsedOnceIntoTheValueTheStagesShare() throws {
        let recorded = RecordedMetrics()
        guard
            case .parsed(let parsed) = try parse(
                DNSMessage.query(name: "a.test.", type: .aaaa, id: 8),
                recorded: recorded
            )
        else {
            Issue.record("a good query must parse")
            return
        }
        #expect(parsed.view.id == 8 && parsed.view.questionType == .aaaa && parsed.clientProtocol == .udp)
    }

    @Test func whatCannotBeForwardedIsAnsweredWithTheReason() throws {
        let recorded = RecordedMetrics()
        // Garbage after a header: FORMERR.
        var garbage = try DNSMessage.query(name: "a.test.", type: .a, id: 8).encoded()
        garbage.moveWriterIndex(to: 14)
        #expect(try rcode(parse(garbage, recorded: recorded)) == .formatError)
        // Two questions: FORMERR.
        var two = DNSMessage.query(name: "a.test.", type: .a, id: 8)
        two.questions.append(two.questions[0])
        #expect(try rcode(parse(two, recorded: recorded)) == .formatError)
        #expect(recorded.count(DNSProxyMetrics.Name.malformed, [("action", "formerr")]) == 2)
        // NOTIFY: NOTIMP.
        var notify = DNSMessage.query(name: "a.test.", type: .soa, id: 8)
        notify.header.opcode = .notify
        #expect(try rcode(parse(notify, recorded: recorded)) == .notImplemented)
        // EDNS version 1: BADVERS (in the OPT's extended bits; the header says NOERROR).
        let future = DNSMessage.query(name: "a.test.", type: .a, id: 8, edns: EDNSRecord(version: 1))
        guard case .answered(let badVersion) = try parse(future, recorded: recorded) else {
            Issue.record("an unknown EDNS version must be answered")
            return
        }
        #expect(try DNSMessage(decoding: badVersion).header.responseCode == .badVersion)
    }
}
