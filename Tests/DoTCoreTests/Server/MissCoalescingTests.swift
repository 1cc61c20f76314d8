import NIOCore
import NIOEmbedded
import Testing

@testable import DoTCore

/// Which misses may wait for another's upstream answer. The table of misses in flight is keyed by a
/// 64-bit hash (`DNSCacheKey`), so a collision must not hand one question's answer to another.
struct MissCoalescingTests {
    let loop = EmbeddedEventLoop()

    func miss(
        _ name: DNSName,
        _ type: DNSRecordType = .a,
        dnssecOK: Bool = false,
        checkingDisabled: Bool = false
    ) throws
        -> ForwardingQueryHandler.Miss
    {
        var query = DNSMessage.query(name: name, type: type, id: 7, edns: EDNSRecord(dnssecOK: dnssecOK))
        query.header.checkingDisabled = checkingDisabled
        let message = try query.encoded()
        let client = try SocketAddress(ipAddress: "127.0.0.1", port: 5300)
        let promise = loop.makePromise(of: ByteBuffer?.self)
        defer { promise.succeed(nil) }
        return ForwardingQueryHandler.Miss(
            query: DNSClientQuery(message: message, client: client, transport: .udp),
            view: try DNSMessageView(message),
            start: .now(),
            replied: promise,
            counted: true
        )
    }

    @Test func theSameQuestionInAnotherCaseJoins() throws {
        #expect(try miss("Herd.TEST.").asksSameQuestion(as: miss("herd.test.")))
    }

    @Test func anotherNameTypeOrFlagDoesNotJoin() throws {
        let leader = try miss("herd.test.")
        #expect(try !miss("other.test.").asksSameQuestion(as: leader))
        #expect(try !miss("herd.test.", .aaaa).asksSameQuestion(as: leader))
        #expect(try !miss("herd.test.", dnssecOK: true).asksSameQuestion(as: leader))
        #expect(try !miss("herd.test.", checkingDisabled: true).asksSameQuestion(as: leader))
    }
}
