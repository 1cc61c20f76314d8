import NIOCore
import Testing

@testable import DoTCore

/// The connection-level EDNS options: edns-tcp-keepalive answered with the idle timeout, padding of
/// replies to padded queries over TLS, and every reply that cannot take them left as it is.
@Suite struct StreamQueryOptionsTests {
    static func query(options: [EDNSOption]?) throws -> ByteBuffer {
        try DNSMessage.query(name: "a.test.", type: .a, id: 5, edns: options.map { EDNSRecord(options: $0) }).encoded()
    }

    static func reply(to query: ByteBuffer) throws -> ByteBuffer {
        DNSResponseBuilder.reply(to: query, view: try DNSMessageView(query), rcode: .noError)
    }

    @Test func aQueryWithoutTheOptionsAsksForNothing() throws {
        #expect(StreamQueryOptions(query: try Self.query(options: nil)).isEmpty)
        #expect(StreamQueryOptions(query: try Self.query(options: [])).isEmpty)
        #expect(
            StreamQueryOptions(query: try Self.query(options: [.cookie(client: Array(repeating: 1, count: 8))])).isEmpty
        )
        #expect(StreamQueryOptions(query: ByteBuffer(bytes: [1, 2, 3])).isEmpty, "unreadable: the handler answers it")
    }

    @Test func keepaliveIsAnsweredWithTheTimeoutOverTCPWithoutPadding() throws {
        let query = try Self.query(options: [.tcpKeepalive(timeout: nil), .padding(length: 20)])
        let options = StreamQueryOptions(query: query)
        #expect(options == StreamQueryOptions(keepalive: true, padding: true))
        let amended = options.amend(try Self.reply(to: query), keepaliveTimeout: 100, pads: false)
        let message = try DNSMessage(decoding: amended)
        #expect(message.edns?.option(.tcpKeepalive)?.data == [0, 100])
        #expect(message.edns?.option(.padding) == nil, "no padding over clear-text TCP")
    }

    @Test func paddingOverTLSMakesEveryReplyAMultipleOf468Octets() throws {
        for length in [0, 50, 300, 460] {
            let query = try Self.query(options: [.padding(length: length)])
            let reply = try Self.reply(to: query)
            let amended = StreamQueryOptions(query: query).amend(reply, keepaliveTimeout: 100, pads: true)
            #expect(amended.readableBytes % StreamQueryOptions.replyPaddingBlock == 0)
            #expect(try DNSMessage(decoding: amended).header.id == 5)
        }
    }

    @Test func aReplyWithoutOPTOrTooLongIsLeftAsItIs() throws {
        let options = StreamQueryOptions(keepalive: true, padding: true)
        let noOPT = try DNSMessage.query(name: "a.test.", type: .a, id: 5, edns: nil).encoded()
        #expect(options.amend(noOPT, keepaliveTimeout: 100, pads: true) == noOPT)
        var long = try Self.reply(to: try Self.query(options: []))
        long.writeBytes([0])  // a trailing octet: the view's length no longer matches the buffer
        #expect(options.amend(long, keepaliveTimeout: 100, pads: true) == long)
    }
}
