import DoTCore
import NIOCore
import Testing

@Suite("Captured packets decode, re-encode and index consistently")
struct FixtureRoundTripTests {
    @Test("every fixture is present", arguments: Fixtures.allFiles)
    func fixtureExists(file: String) throws {
        #expect(try Fixtures.bytes(file).count >= DNSHeader.wireLength)
    }

    @Test("decode → encode → decode gives the same message", arguments: Fixtures.allFiles)
    func roundTrip(file: String) throws {
        let original = try Fixtures.buffer(file)
        let message = try DNSMessage(decoding: original)
        let compressed = try message.encoded()
        let uncompressed = try message.encoded(compress: false)
        #expect(try DNSMessage(decoding: compressed) == message)
        #expect(try DNSMessage(decoding: uncompressed) == message)
        // Our compression is never worse than the server's.
        #expect(compressed.readableBytes <= original.readableBytes)
        #expect(uncompressed.readableBytes >= compressed.readableBytes)
    }

    @Test("queries re-encode byte for byte", arguments: Fixtures.names)
    func queriesAreByteIdentical(name: String) throws {
        let original = try Fixtures.query(name)
        #expect(try DNSMessage(decoding: original).encoded() == original)
    }

    @Test("the view agrees with the full decode", arguments: Fixtures.allFiles)
    func viewAgreesWithDecode(file: String) throws {
        let buffer = try Fixtures.buffer(file)
        let message = try DNSMessage(decoding: buffer)
        let view = try DNSMessageView(buffer)
        #expect(view.header == message.header)
        #expect(Int(view.questionCount) == message.questions.count)
        #expect(Int(view.answerCount) == message.answers.count)
        #expect(Int(view.authorityCount) == message.authorities.count)
        #expect(Int(view.additionalCount) == message.additionals.count + (message.edns == nil ? 0 : 1))
        #expect(view.questionName(in: buffer) == message.questions.first?.name)
        #expect(view.questionType == message.questions.first?.type)
        #expect(view.questionClass == message.questions.first?.class)
        #expect(view.ednsUDPPayloadSize == message.edns?.udpPayloadSize)
        #expect(view.dnssecOK == (message.edns?.dnssecOK ?? false))
        #expect(view.length == buffer.readableBytes)
        let ttls = view.ttlOffsets(in: buffer).map { buffer.getInteger(at: $0, as: UInt32.self) }
        let expected = (message.answers + message.authorities + message.additionals).map(\.ttl)
        #expect(ttls == expected)
    }

    @Test func answersAreTyped() throws {
        let a = try DNSMessage(decoding: Fixtures.response("a"))
        #expect(a.header.isResponse && a.header.isAuthoritativeAnswer && a.header.responseCode == .noError)
        #expect(Set(a.answers.map(\.rdata)) == [.a(IPv4Address(192, 0, 2, 1)), .a(IPv4Address(192, 0, 2, 2))])
        #expect(a.answers.allSatisfy { $0.name == "a.test." && $0.ttl == 300 && $0.class == .internet })

        let aaaa = try DNSMessage(decoding: Fixtures.response("aaaa"))
        #expect(aaaa.answers.map(\.rdata) == [.aaaa(IPv6Address("2001:db8::1")!)])

        let cname = try DNSMessage(decoding: Fixtures.response("cname"))
        #expect(cname.answers.first?.rdata == .cname("a.test."))
        #expect(cname.answers.count == 1)  // Unbound's static local data does not chase the CNAME.

        let mx = try DNSMessage(decoding: Fixtures.response("mx"))
        #expect(mx.answers.map(\.rdata) == [.mx(preference: 10, exchange: "a.test.")])

        let txt = try DNSMessage(decoding: Fixtures.response("txt"))
        #expect(
            txt.answers.map(\.rdata) == [
                .txt([Array("first string".utf8), Array("second string".utf8), Array("v=spf1 -all".utf8)])
            ]
        )

        let big = try DNSMessage(decoding: Fixtures.response("big-txt"))
        guard case .txt(let strings) = big.answers.first?.rdata else {
            Issue.record("big TXT did not decode as TXT")
            return
        }
        #expect(strings.count == 6 && strings.allSatisfy { $0.count == 250 })
        #expect(try Fixtures.response("big-txt").readableBytes > 1232)

        let srv = try DNSMessage(decoding: Fixtures.response("srv"))
        #expect(srv.answers.map(\.rdata) == [.srv(.init(priority: 10, weight: 5, port: 853, target: "a.test."))])

        let caa = try DNSMessage(decoding: Fixtures.response("caa"))
        #expect(caa.answers.map(\.rdata) == [.caa(.init(flags: 0, tag: "issue", value: Array("ca.example".utf8)))])

        let https = try DNSMessage(decoding: Fixtures.response("https"))
        // alpn (key 1) = "h2","h3" as length-prefixed strings.
        let alpn = DNSRData.ServiceBinding.Parameter(key: 1, value: [2, 0x68, 0x32, 2, 0x68, 0x33])
        #expect(https.answers.map(\.rdata) == [.https(.init(priority: 1, target: .root, parameters: [alpn]))])

        let unknown = try DNSMessage(decoding: Fixtures.response("unknown-type"))
        #expect(unknown.answers.first?.type == DNSRecordType(rawValue: 65280))
        #expect(unknown.answers.first?.rdata == .opaque([1, 2, 3, 4]))
        #expect(unknown.answers.first?.type.description == "TYPE65280")

        let ptr = try DNSMessage(decoding: Fixtures.response("ptr"))
        #expect(ptr.answers.map(\.rdata) == [.ptr("a.test.")])

        let root = try DNSMessage(decoding: Fixtures.response("root-ns"))
        #expect(root.questions.first?.name == .root && root.answers.map(\.rdata) == [.ns("ns.test.")])
    }

    @Test func negativeAnswersCarryTheSOA() throws {
        let nxdomain = try DNSMessage(decoding: Fixtures.response("nxdomain"))
        #expect(nxdomain.header.responseCode == .nameError)
        #expect(nxdomain.answers.isEmpty)
        guard case .soa(let soa) = nxdomain.authorities.first?.rdata else {
            Issue.record("no SOA in the authority section")
            return
        }
        #expect(soa.primaryNameServer == "ns.test." && soa.minimum == 300 && soa.expire == 86400)

        let nodata = try DNSMessage(decoding: Fixtures.response("nodata"))
        #expect(nodata.header.responseCode == .noError && nodata.answers.isEmpty)
        #expect(nodata.authorities.first?.type == .soa)
    }

    @Test func ednsDetails() throws {
        let padded = try DNSMessage(decoding: Fixtures.query("padded"))
        let padding = try #require(padded.edns?.option(.padding))
        #expect(padding.data.allSatisfy { $0 == 0 })
        #expect(padding.data.count == 128)  // kdig's +padding=128 adds 128 octets of padding.

        let cookieQuery = try DNSMessage(decoding: Fixtures.query("cookie"))
        let cookie = try #require(cookieQuery.edns?.option(.cookie)?.cookie)
        #expect(cookie.client.count == 8 && cookie.server.isEmpty)
        // Unbound 1.17 does not answer cookies, so the reply has none; it must still decode.
        let cookieReply = try DNSMessage(decoding: Fixtures.response("cookie"))
        #expect(cookieReply.edns != nil && cookieReply.edns?.option(.cookie) == nil)

        #expect(try DNSMessage(decoding: Fixtures.query("dnssec-do")).edns?.dnssecOK == true)
        #expect(try DNSMessage(decoding: Fixtures.query("a")).edns?.dnssecOK == false)
        #expect(try DNSMessage(decoding: Fixtures.query("no-edns")).edns == nil)
        #expect(try DNSMessageView(Fixtures.query("no-edns")).clientUDPPayloadSize == 512)
        #expect(try DNSMessageView(Fixtures.query("a")).clientUDPPayloadSize == 1232)
    }

    @Test func compressionIsUsedAndSRVTargetsAreNot() throws {
        // The SRV target "a.test." must be written out in full, although the same name was written before.
        var message = try DNSMessage(decoding: Fixtures.response("srv"))
        message.additionals = [DNSResourceRecord(name: "a.test.", ttl: 1, rdata: .a(IPv4Address(192, 0, 2, 1)))]
        let bytes = Array(try message.encoded().readableBytesView)
        let target: [UInt8] = [1, 0x61, 4, 0x74, 0x65, 0x73, 0x74, 0]
        #expect(bytes.indices.contains { bytes[$0...].starts(with: target) })
        // MX RDATA may be compressed: the exchange becomes a pointer.
        let mx = try DNSMessage(decoding: Fixtures.response("mx"))
        #expect(try mx.encoded().readableBytes < mx.encoded(compress: false).readableBytes)
    }

    @Test func caseIsPreservedAndMatchedInsensitively() throws {
        let query = try DNSMessage(decoding: Fixtures.query("mixed-case"))
        #expect(query.questions.first?.name.description == "A.TeSt.")
        #expect(query.questions.first?.name == "a.test.")
        let queryBuffer = try Fixtures.query("mixed-case")
        let responseBuffer = try Fixtures.response("mixed-case")
        let lower = try Fixtures.response("a")
        #expect(
            try DNSMessageView(queryBuffer).questionMatches(
                DNSMessageView(responseBuffer),
                in: queryBuffer,
                otherBuffer: responseBuffer
            )
        )
        #expect(
            try DNSMessageView(queryBuffer).questionMatches(DNSMessageView(lower), in: queryBuffer, otherBuffer: lower)
        )
        let other = try Fixtures.response("aaaa")
        #expect(
            try !DNSMessageView(queryBuffer).questionMatches(DNSMessageView(other), in: queryBuffer, otherBuffer: other)
        )
    }
}
