import DoTCore
import Testing

@Suite struct DNSNameTests {
    @Test func parsesAndPrintsPresentationFormat() throws {
        #expect(try DNSName(parsing: "www.example.com.").description == "www.example.com.")
        #expect(try DNSName(parsing: "www.example.com").description == "www.example.com.")
        #expect(try DNSName(parsing: ".") == .root)
        #expect(DNSName.root.description == ".")
        #expect(try DNSName(parsing: "a\\.b.c.").labelCount == 2)
        #expect(try DNSName(parsing: "a\\.b.c.").description == "a\\.b.c.")
        #expect(try DNSName(parsing: "\\065\\066c.").description == "ABc.")
        #expect(try DNSName(parsing: "x\\000y.").wireBytes == [3, 0x78, 0, 0x79, 0])
        #expect(try DNSName(parsing: "x\\000y.").description == "x\\000y.")
        #expect(try DNSName(parsing: "sp\\ ace.").description == "sp\\ ace.")
        #expect(try DNSName(parsing: "back\\\\slash.").description == "back\\\\slash.")
        #expect(
            try DNSName(parsing: "WWW.Example.COM").labels.map { String(decoding: $0, as: UTF8.self) } == [
                "WWW", "Example", "COM",
            ]
        )
    }

    @Test(arguments: ["a..b", "..", "a.\\", "\\25", "\\256.", "\\2x5."])
    func rejectsMalformedPresentation(_ text: String) {
        #expect(throws: DNSWireError.self) { try DNSName(parsing: text) }
    }

    @Test func enforcesLengthBounds() throws {
        let label63 = String(repeating: "a", count: 63)
        #expect(throws: Never.self) { try DNSName(parsing: label63 + ".") }
        do {
            _ = try DNSName(parsing: label63 + "a.")
            Issue.record("a 64-octet label was accepted")
        } catch { #expect(error.code == .labelTooLong) }
        // 3 x 64 + 62 + 1 = 255 octets: the longest valid name.
        let longest = [label63, label63, label63, String(repeating: "b", count: 61)].joined(separator: ".")
        #expect(try DNSName(parsing: longest).wireBytes.count == 255)
        do {
            _ = try DNSName(parsing: longest + "b")
            Issue.record("a 256-octet name was accepted")
        } catch { #expect(error.code == .nameTooLong) }
        #expect(throws: DNSWireError.self) { try DNSName(labels: [[UInt8]()]) }
        // A label over 255 octets is refused for its length, and a malformed text for its form first.
        do {
            _ = try DNSName(parsing: String(repeating: "c", count: 300) + ".d")
            Issue.record("a 300-octet label was accepted")
        } catch { #expect(error.code == .labelTooLong) }
        do {
            _ = try DNSName(parsing: label63 + "a..b")
            Issue.record("an empty label was accepted")
        } catch { #expect(error.code == .invalidPresentation) }
    }

    @Test func parsingAgreesWithTheLabels() throws {
        for labels in [["a"], ["www", "example", "com"], [String(repeating: "x", count: 63), "y"], ["a.b", "c"]] {
            let wire = try DNSName(labels: labels.map { Array($0.utf8) })
            let text = labels.map {
                $0.split(separator: ".", omittingEmptySubsequences: false).joined(separator: "\\.")
            }.joined(separator: ".")
            #expect(try DNSName(parsing: text).wireBytes == wire.wireBytes)
            #expect(try DNSName(parsing: text + ".").wireBytes == wire.wireBytes)
            #expect(try DNSName(parsing: wire.description).wireBytes == wire.wireBytes)
        }
    }

    @Test func equalityAndHashingIgnoreCaseButKeepIt() {
        let upper: DNSName = "WWW.Example.COM."
        let lower: DNSName = "www.example.com."
        #expect(upper == lower)
        #expect(upper.hashValue == lower.hashValue)
        #expect(Set([upper, lower]).count == 1)
        #expect(upper.description == "WWW.Example.COM.")
        #expect(upper.lowercased().description == "www.example.com.")
        #expect(upper != "www.example.org.")
        // Non-letters are not folded: '[' (0x5B) and '{' (0x7B) differ.
        #expect(DNSName(stringLiteral: "[.") != DNSName(stringLiteral: "{."))
    }

    @Test func subdomains() {
        let name: DNSName = "a.b.Example.com."
        #expect(name.isSubdomain(of: "example.COM."))
        #expect(name.isSubdomain(of: name))
        #expect(name.isSubdomain(of: .root))
        #expect(!name.isSubdomain(of: "b.example.org."))
        #expect(!DNSName("xexample.com.").isSubdomain(of: "example.com."))
        #expect(!DNSName("com.").isSubdomain(of: "example.com."))
    }
}

@Suite struct CodePointTests {
    @Test func recordTypesAreOpen() {
        #expect(DNSRecordType.https.rawValue == 65 && DNSRecordType.https.description == "HTTPS")
        #expect(DNSRecordType(rawValue: 65280).name == nil)
        #expect(DNSRecordType(rawValue: 65280).description == "TYPE65280")
        #expect(DNSRecordType(name: "aaaa") == .aaaa)
        #expect(DNSRecordType(name: "TYPE65280") == DNSRecordType(rawValue: 65280))
        #expect(DNSRecordType(name: "NOPE") == nil)
        #expect(DNSRecordType.mx.allowsRDataCompression && !DNSRecordType.srv.allowsRDataCompression)
    }

    @Test func classesOpcodesAndResponseCodes() {
        #expect(DNSClass.internet.description == "IN" && DNSClass(rawValue: 12).description == "CLASS12")
        #expect(DNSClass(name: "ch") == .chaos && DNSClass(name: "CLASS9") == DNSClass(rawValue: 9))
        #expect(DNSOpcode.notify.description == "NOTIFY" && DNSOpcode(rawValue: 9)?.description == "OPCODE9")
        #expect(DNSOpcode(rawValue: 16) == nil)
        #expect(DNSResponseCode.badVersion.headerBits == 0 && DNSResponseCode.badVersion.extendedBits == 1)
        #expect(DNSResponseCode.nameError.description == "NXDOMAIN")
        #expect(DNSResponseCode(rawValue: 4095)?.description == "RCODE4095")
        #expect(DNSResponseCode(rawValue: 4096) == nil)
        #expect(
            EDNSOptionCode.padding.description == "PADDING" && EDNSOptionCode(rawValue: 65001).description == "OPT65001"
        )
    }

    @Test func extendedResponseCodesTravelInOPT() throws {
        var message = DNSMessage.query(name: "a.test.", type: .a, id: 7)
        message.header.isResponse = true
        message.header.responseCode = .badCookie
        let buffer = try message.encoded()
        let decoded = try DNSMessage(decoding: buffer)
        #expect(decoded.header.responseCode == .badCookie)
        #expect(try DNSMessageView(buffer).responseCode == .badCookie)
        message.edns = nil
        #expect(throws: DNSWireError.self) { try message.encoded() }
    }

    @Test func headerFlagsRoundTrip() {
        for flags: UInt16 in [0, 0x8180, 0x0100, 0x8583, 0xFFFF, 0x7FF0, 0x0040] {
            #expect(DNSHeader(id: 1, flags: flags).flags == flags)
        }
    }
}

@Suite struct IPAddressTests {
    @Test func ipv4() {
        #expect(IPv4Address("192.0.2.1") == IPv4Address(192, 0, 2, 1))
        #expect(IPv4Address(192, 0, 2, 1).description == "192.0.2.1")
        for bad in ["192.0.2", "192.0.2.256", "192.0.2.01", "a.b.c.d", "1.2.3.4.5", ""] {
            #expect(IPv4Address(bad) == nil, "\(bad)")
        }
    }

    @Test func ipv6() {
        let cases: [(String, String)] = [
            ("2001:db8::1", "2001:db8::1"), ("::", "::"), ("::1", "::1"), ("1::", "1::"),
            ("2001:0db8:0000:0000:0001:0000:0000:0001", "2001:db8::1:0:0:1"),
            ("::ffff:192.0.2.1", "::ffff:c000:201"), ("fe80::1:2:3:4", "fe80::1:2:3:4"),
            ("1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8"), ("1:0:3:4:5:6:7:8", "1:0:3:4:5:6:7:8"),
        ]
        for (input, canonical) in cases {
            #expect(IPv6Address(input)?.description == canonical, "\(input)")
        }
        #expect(IPv6Address("::ffff:192.0.2.1")?.mappedIPv4 == IPv4Address(192, 0, 2, 1))
        #expect(IPv6Address("2001:db8::1")?.mappedIPv4 == nil)
        for bad in ["1:2:3:4:5:6:7", "1::2::3", ":1", "1:", "12345::", "1:2:3:4:5:6:7:8:9", "g::"] {
            #expect(IPv6Address(bad) == nil, "\(bad)")
        }
        let address = IPv6Address("2001:db8::1")!
        #expect(IPv6Address(octets: address.octets) == address)
    }
}
