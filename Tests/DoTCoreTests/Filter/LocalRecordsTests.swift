import DoTCore
import NIOCore
import Testing

/// Names answered locally: what a home network needs for `router.lan`.
@Suite struct LocalRecordsTests {
    static let records = LocalRecords(
        parsing: """
            # local names
            zone lan
            192.168.1.1 router.lan router   # a hosts line: A and its PTR
            fd00::1 router.lan
            nas.lan CNAME router.lan
            info.lan TXT "hello local world"
            printer.lan A 192.168.1.9
            bogus.lan MX 10 router.lan
            """,
        ttl: 120
    )

    func ask(_ name: DNSName, _ type: DNSRecordType = .a) throws -> DNSMessage? {
        let query = try ParsedDNSMessage(DNSMessage.query(name: name, type: type, id: 9).encoded())
        return try Self.records.answer(query).map { try DNSMessage(decoding: $0) }
    }

    @Test func listedNamesAreAnsweredAuthoritatively() throws {
        let a = try #require(try ask("Router.LAN."))
        #expect(a.header.isAuthoritativeAnswer && a.header.responseCode == .noError && a.header.id == 9)
        #expect(a.answers.map(\.rdata) == [.a(IPv4Address(192, 168, 1, 1))] && a.answers.allSatisfy { $0.ttl == 120 })
        #expect(try ask("router.lan.", .aaaa)?.answers.map(\.rdata) == [.aaaa(IPv6Address("fd00::1")!)])
        #expect(try ask("1.1.168.192.in-addr.arpa.", .ptr)?.answers.map(\.rdata) == [.ptr("router.lan.")])
        #expect(try ask("router.", .a)?.answers.count == 1, "the hosts line's second name")
        let cname = try #require(try ask("nas.lan."))
        #expect(cname.answers.map(\.rdata) == [.cname("router.lan."), .a(IPv4Address(192, 168, 1, 1))])
        #expect(try ask("info.lan.", .txt)?.answers.map(\.rdata) == [.txt([Array("hello local world".utf8)])])
    }

    @Test func aListedNameWithoutTheTypeIsNoDataAndAnUnlistedOneInTheZoneIsNXDOMAIN() throws {
        let noData = try #require(try ask("printer.lan.", .aaaa))
        #expect(noData.header.responseCode == .noError && noData.answers.isEmpty)
        let missing = try #require(try ask("ghost.lan."))
        #expect(missing.header.responseCode == .nameError && missing.header.isAuthoritativeAnswer)
        #expect(try ask("example.com.") == nil, "outside the local names and zones: forwarded")
        #expect(Self.records.rejectedLineCount == 1 && Self.records.rejectedLines.first?.line == 8)
    }

    @Test func theFilterAnswersLocalNamesBeforeItsLists() throws {
        let filter = DomainListFilter(
            blocklists: [DomainList(parsing: "lan\n", name: "everything-lan")],
            localRecords: Self.records
        )
        let client = try SocketAddress(ipAddress: "127.0.0.1", port: 1)
        let query = try ParsedDNSMessage(DNSMessage.query(name: "router.lan.", type: .a, id: 3).encoded())
        guard case .answered(_, let source) = filter.decide(query, client: client) else {
            Issue.record("a local name is answered")
            return
        }
        #expect(source == "local-records")
    }
}
