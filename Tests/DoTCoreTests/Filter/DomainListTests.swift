import DoTCore
import DoTCoreTesting
import NIOCore
import NIOPosix
import Testing

/// Lists in the formats people have, the set that matches names and their subdomains, and the filter
/// that answers for them.
@Suite struct DomainListTests {
    static let client = try! SocketAddress(ipAddress: "127.0.0.1", port: 4000)

    static func query(_ name: DNSName, _ type: DNSRecordType = .a, edns: Bool = true) throws -> ParsedDNSMessage {
        try ParsedDNSMessage(
            DNSMessage.query(name: name, type: type, id: 77, edns: edns ? EDNSRecord() : nil).encoded()
        )
    }

    @Test func aNameBlocksItselfAndItsSubdomainsInAnyCase() {
        var builder = DomainNameSetBuilder()
        var accepted = ["Ads.Example.", "tracker.test"].map { builder.add($0) }
        accepted.append(builder.add("wild.test", subdomainsOnly: true))
        accepted.append(builder.add("ads.example"))  // a duplicate is accepted and kept once
        let refused = ["not a name", "", "a..b"].map { builder.add($0) }
        #expect(accepted == [true, true, true, true] && refused == [false, false, false])
        let set = builder.build()
        #expect(set.count == 3)
        #expect(set.matches("ads.example") && set.matches("x.y.ADS.example.") && set.matches("tracker.test"))
        #expect(!set.matches("example") && !set.matches("bads.example") && !set.matches("ads.example.org"))
        #expect(set.matches("a.wild.test") && !set.matches("wild.test"), "*. blocks the subdomains only")
        #expect(!DomainNameSet().matches("ads.example"))
    }

    /// Found by the lists fuzz target: `*.name` then `name` kept only the first, and `name` itself
    /// was not blocked.
    @Test func aNameListedAloneAndAsWildcardBlocksItselfWhicheverComesFirst() {
        for order in [["*.wild.test", "WILD.test"], ["wild.test", "*.wild.test"]] {
            let list = DomainList(parsing: order.joined(separator: "\n"), name: "both")
            #expect(list.blocked.count == 1)
            #expect(list.blocked.matches("wild.test") && list.blocked.matches("a.wild.test"), "\(order)")
        }
    }

    /// Found by the lists fuzz target: a name of more than 127 wire octets overflowed the entry's
    /// length into its subdomains-only flag, and was neither blocked nor found.
    @Test func longNamesUpToTheLimitAreBlockedWithTheirSubdomains() {
        let label = String(repeating: "a", count: 63)
        for labels in 2...4 {
            // 2 labels: 127 octets; 3: 191; 4: 253 characters, the longest a name can be.
            let name = Array(repeating: label, count: labels).joined(separator: ".").prefix(253)
            let list = DomainList(parsing: "*.other.test\n\(name)\n", name: "long")
            #expect(list.rejectedLineCount == 0, "\(name.count) characters")
            #expect(list.blocked.matches(String(name)) && list.blocked.matches(String(name).uppercased()))
            if name.count < 250 { #expect(list.blocked.matches("x." + name)) }
            #expect(!list.blocked.matches("other.test") && list.blocked.matches("a.other.test"))
        }
        #expect(
            DomainList(
                parsing:
                    "444444444444444metrics.exam5ple.org.44444444444444444444444444444444444xm4444444444444444444metrics.exam5ple.org.444444444444444444444444444444444444444",
                name: "fuzz"
            ).blocked.matches(
                "444444444444444metrics.exam5ple.org.44444444444444444444444444444444444xm4444444444444444444metrics.exam5ple.org.444444444444444444444444444444444444444"
            )
        )
    }

    @Test func aMillionNamesCostAFewDozenOctetsEach() {
        var builder = DomainNameSetBuilder()
        for index in 0..<100_000 { builder.add("host-\(index).ads\(index % 97).example.com") }
        let set = builder.build()
        #expect(set.count == 100_000)
        #expect(set.footprint / set.count < 64, "\(set.footprint / set.count) octets a name")
        #expect(set.matches("host-99999.ads89.example.com") && !set.matches("host-99999.ads88.example.com"))
    }

    @Test func hostsPlainAndAdblockFormatsAreReadAndBadLinesCounted() {
        let list = DomainList(
            parsing: """
                # a hosts file
                0.0.0.0 ads.example
                127.0.0.1 localhost
                127.0.0.1 one.test two.test   # two names
                ::1 six.test
                plain.test
                *.wild.test
                [Adblock Plus 2.0]
                ! a comment
                ||adblock.test^
                @@||ok.adblock.test^
                ||withoptions.test^$third-party
                ||path.test/banner
                not a domain line
                \r
                """,
            name: "mixed"
        )
        #expect(list.name == "mixed" && list.blocked.count == 7 && list.allowed.count == 1)
        for name in ["ads.example", "one.test", "two.test", "six.test", "plain.test", "x.wild.test", "adblock.test"] {
            #expect(list.blocked.matches(name), "\(name)")
        }
        #expect(!list.blocked.matches("localhost") && list.allowed.matches("ok.adblock.test"))
        #expect(list.rejectedLineCount == 3)
        #expect(list.rejectedLines.map(\.line) == [12, 13, 14])
    }

    @Test func aBlockedQueryGetsTheActionWithABlockedReasonAndAnAllowRuleWins() throws {
        let ads = DomainList(parsing: "ads.example\n||ok.ads.example^\n@@||fine.ads.example^\n", name: "ads")
        let allow = DomainList(parsing: "ok.ads.example\n", name: "mine")
        let filter = DomainListFilter(blocklists: [ads], allowlists: [allow])
        guard
            case .blocked(let reply?, let list, let rule) = filter.decide(
                try Self.query("X.Ads.Example."),
                client: Self.client
            )
        else {
            Issue.record("a subdomain of a listed name is blocked")
            return
        }
        #expect(list == "ads" && rule == "ads.example")
        let message = try DNSMessage(decoding: reply)
        #expect(message.header.responseCode == .nameError && message.header.id == 77)
        #expect(message.questions.first?.name.description == "X.Ads.Example.")
        #expect(message.edns?.options.contains { $0.code == .extendedError } == true, "EDE 15 for an EDNS client")
        for allowed in ["ok.ads.example.", "a.fine.ads.example.", "example.", "other.test."] {
            guard case .pass = filter.decide(try Self.query(DNSName(parsing: allowed)), client: Self.client) else {
                Issue.record("\(allowed) must pass")
                continue
            }
        }
    }

    @Test(arguments: [BlockAction.nxdomain, .refused, .nullAddress, .addresses([IPv4Address(192, 0, 2, 8)], [])])
    func eachActionAnswersAsItSays(action: BlockAction) throws {
        let filter = DomainListFilter(
            blocklists: [DomainList(parsing: "ads.example", name: "ads")],
            action: action,
            ttl: 7
        )
        for type in [DNSRecordType.a, .aaaa, .txt] {
            guard
                case .blocked(let reply?, _, _) = filter.decide(
                    try Self.query("ads.example.", type, edns: false),
                    client: Self.client
                )
            else {
                Issue.record("blocked")
                return
            }
            let message = try DNSMessage(decoding: reply)
            #expect(message.edns == nil, "no OPT for a client without EDNS")
            switch action {
            case .nxdomain: #expect(message.header.responseCode == .nameError)
            case .refused: #expect(message.header.responseCode == .refused)
            case .nullAddress:
                #expect(message.header.responseCode == .noError)
                let expected: [DNSRData] =
                    type == .a ? [.a(IPv4Address(0, 0, 0, 0))] : type == .aaaa ? [.aaaa(IPv6Address("::")!)] : []
                #expect(message.answers.map(\.rdata) == expected && message.answers.allSatisfy { $0.ttl == 7 })
            case .addresses:
                #expect(message.answers.map(\.rdata) == (type == .a ? [.a(IPv4Address(192, 0, 2, 8))] : []))
            }
        }
    }

    @Test func theHandlerAnswersBlockedQueriesWithoutTheUpstreamAndSwapsItsFilter() async throws {
        let upstream = ScriptedUpstreamTransport()
        let recorded = RecordedMetrics()
        let handler = ForwardingQueryHandler(
            transport: upstream,
            filter: DomainListFilter(blocklists: [DomainList(parsing: "ads.example", name: "ads")]),
            metrics: recorded.metrics
        )
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        func ask(_ name: DNSName) async throws -> DNSResponseCode? {
            let query = DNSClientQuery(
                message: try DNSMessage.query(name: name, type: .a, id: 5).encoded(),
                client: Self.client,
                clientProtocol: .udp
            )
            return try await handler.handle(query, on: loop).get().map {
                try DNSMessage(decoding: $0).header.responseCode
            }
        }
        #expect(try await ask("www.ads.example.") == .nameError && upstream.queryCount == 0)
        #expect(try await ask("www.example.") == .noError && upstream.queryCount == 1)
        #expect(recorded.count(DNSProxyMetrics.Name.filterBlocked, [("list", "ads")]) == 1)
        handler.updateFilter(nil)
        #expect(try await ask("www.ads.example.") == .noError && upstream.queryCount == 2)
    }
}
