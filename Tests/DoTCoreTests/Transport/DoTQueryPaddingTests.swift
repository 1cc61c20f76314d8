import NIOCore
import Testing

@testable import DoTCore

@Suite struct DoTQueryPaddingTests {
    /// `message` with its padding stripped; the view kept or remade must index the result exactly as a
    /// fresh parse does.
    func stripped(_ message: ByteBuffer) throws -> ByteBuffer {
        var parsed = try ParsedDNSMessage(message)
        DoTQueryPadding.stripPadding(&parsed)
        #expect(String(describing: parsed.view) == String(describing: try DNSMessageView(parsed.buffer)))
        return parsed.buffer
    }

    @Test(arguments: ["a", "no-edns", "padded", "cookie", "dnssec-do", "big-txt"])
    func queriesArePaddedToBlocksAndKeepTheirOptions(fixture: String) throws {
        let original = try Fixtures.query(fixture)
        let view = try DNSMessageView(original)
        let padded = DoTQueryPadding.pad(original, view: view, blockSize: 128)
        #expect(padded.readableBytes % 128 == 0)
        let before = try DNSMessage(decoding: original)
        let after = try DNSMessage(decoding: padded)
        #expect(after.header == before.header && after.questions == before.questions)
        #expect(after.edns?.option(.padding) != nil)
        #expect(
            after.edns?.options.filter { $0.code != .padding }
                == (before.edns?.options ?? []).filter { $0.code != .padding }
        )
        #expect(after.edns?.dnssecOK == (before.edns?.dnssecOK ?? false))
        // Stripping gives back the options without padding.
        let unpadded = try DNSMessage(decoding: stripped(padded))
        #expect(unpadded.edns?.option(.padding) == nil)
        #expect(unpadded.questions == before.questions)
    }

    @Test func aMessageWithoutPaddingIsReturnedUntouched() throws {
        let reply = try Fixtures.response("a")
        let result = try stripped(reply)
        #expect(result == reply)
        #expect(DoTQueryPadding.pad(reply, view: try DNSMessageView(reply), blockSize: 0) == reply)
    }

    /// Upstreams put padding last: it is cut off in place. Padding before another option needs the OPT
    /// rebuilt. Both give the same options, less the padding, and the same message otherwise.
    @Test(arguments: [true, false])
    func paddingIsStrippedWhereverItSits(paddingLast: Bool) throws {
        var message = try DNSMessage(decoding: Fixtures.response("a"))
        let cookie = EDNSOption.cookie(client: Array(1...8))
        message.edns = EDNSRecord(
            dnssecOK: true,
            options: paddingLast ? [cookie, .padding(length: 40)] : [.padding(length: 40), cookie]
        )
        let padded = try message.encoded()
        let result = try stripped(padded)
        #expect(result.readableBytes == padded.readableBytes - 44)
        var expected = message
        expected.edns?.options = [cookie]
        #expect(try DNSMessage(decoding: result) == expected)
        #expect(try DNSMessageView(result).length == result.readableBytes)
    }
}
