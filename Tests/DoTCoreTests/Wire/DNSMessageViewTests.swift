import DoTCore
import NIOCore
import Testing

@Suite struct DNSMessageViewTests {
    @Test func rewritesIDAndTruncationInPlace() throws {
        var buffer = try Fixtures.response("a")
        let view = try DNSMessageView(buffer)
        view.setID(0xBEEF, in: &buffer)
        view.setTruncated(true, in: &buffer)
        let message = try DNSMessage(decoding: buffer)
        #expect(message.header.id == 0xBEEF && message.header.isTruncated)
        #expect(try DNSMessageView(buffer).isTruncated)
        try DNSMessageView(buffer).setTruncated(false, in: &buffer)
        #expect(try !DNSMessage(decoding: buffer).header.isTruncated)
    }

    @Test func knowsWhetherOPTEndsTheMessage() throws {
        var message = DNSMessage.query(name: "a.test.", type: .a, id: 1)
        message.edns = nil
        #expect(try !DNSMessageView(message.encoded()).optRecordIsLast, "no OPT")
        message.edns = EDNSRecord()
        var buffer = try message.encoded()
        let view = try DNSMessageView(buffer)
        #expect(view.optRecordIsLast && view.optRecordOffset != nil)
        // A record after OPT (as a TSIG would be): OPT can no longer be cut off by truncating.
        buffer.writeBytes([0, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1])
        buffer.setInteger(UInt16(2), at: 10)
        let after = try DNSMessageView(buffer)
        #expect(!after.optRecordIsLast && after.optRecordOffset == view.optRecordOffset)
    }

    @Test func agesEveryTTLButOPT() throws {
        var buffer = try Fixtures.response("nxdomain")
        let before = try DNSMessage(decoding: buffer)
        let view = try DNSMessageView(buffer)
        view.ageTTLs(by: 100, in: &buffer)
        let after = try DNSMessage(decoding: buffer)
        #expect(after.authorities.map(\.ttl) == before.authorities.map { $0.ttl - 100 })
        #expect(after.edns == before.edns)
        view.ageTTLs(by: 1_000_000, in: &buffer)
        #expect(try DNSMessage(decoding: buffer).authorities.allSatisfy { $0.ttl == 0 })
    }

    @Test func worksAtANonZeroReaderIndex() throws {
        var buffer = ByteBuffer(bytes: [9, 9, 9])
        buffer.writeImmutableBuffer(try Fixtures.response("cname"))
        buffer.moveReaderIndex(forwardBy: 3)
        let view = try DNSMessageView(buffer)
        view.setID(42, in: &buffer)
        view.ageTTLs(by: 10, in: &buffer)
        let message = try DNSMessage(decoding: buffer)
        #expect(message.header.id == 42 && message.answers.allSatisfy { $0.ttl == 290 })
        #expect(view.questionName(in: buffer) == "www.test.")
        buffer.moveReaderIndex(to: 0)
        #expect(buffer.getBytes(at: 0, length: 3) == [9, 9, 9])
    }

    @Test func exposesHeaderFieldsAndSections() throws {
        let buffer = try Fixtures.query("dnssec-do")
        let view = try DNSMessageView(buffer)
        #expect(!view.isResponse && view.opcode == .query && view.dnssecOK && !view.checkingDisabled)
        #expect(view.optRecordOffset != nil && view.additionalSectionOffset == view.answerSectionOffset)
        #expect(view.clientUDPPayloadSize == Int(view.ednsUDPPayloadSize ?? 0))
        let reply = try Fixtures.response("nxdomain")
        let replyView = try DNSMessageView(reply)
        #expect(replyView.responseCode == .nameError && replyView.isResponse)
        #expect(replyView.additionalSectionOffset > replyView.answerSectionOffset)
    }

    @Test func tinyAdvertisedSizesCountAs512() throws {
        var message = DNSMessage.query(name: "a.test.", type: .a, id: 1, edns: EDNSRecord(udpPayloadSize: 100))
        #expect(try DNSMessageView(message.encoded()).clientUDPPayloadSize == 512)
        message.edns = EDNSRecord(udpPayloadSize: 4096)
        #expect(try DNSMessageView(message.encoded()).clientUDPPayloadSize == 4096)
    }
}
