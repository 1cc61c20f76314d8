import DoTCore
import NIOCore
import Testing

/// The limiter with explicit instants: no clock, no sleeping.
@Suite struct TokenBucketRateLimiterTests {
    static let start = NIODeadline.uptimeNanoseconds(1_000_000_000)
    static func at(_ milliseconds: Int64) -> NIODeadline { start + .milliseconds(milliseconds) }
    static func client(_ text: String) -> ClientAddress {
        if let v4 = IPv4Address(text) { return ClientAddress(v4) }
        return ClientAddress(IPv6Address(text)!)
    }

    func decisions(
        _ limiter: TokenBucketRateLimiter,
        _ client: String,
        count: Int,
        at time: Int64,
        clientProtocol: ClientProtocol = .udp
    )
        -> [RateLimitDecision]
    {
        (0..<count).map { _ in
            limiter.decide(for: Self.client(client), clientProtocol: clientProtocol, now: Self.at(time))
        }
    }

    @Test func burstThenSteadyRateThenRefill() {
        let limiter = TokenBucketRateLimiter(configuration: .init(queriesPerSecond: 10, burst: 5))
        #expect(decisions(limiter, "192.0.2.1", count: 5, at: 0).allSatisfy { $0 == .admit })
        #expect(decisions(limiter, "192.0.2.1", count: 1, at: 0) == [.refuse])
        // 10 per second: one new token every 100 ms.
        #expect(decisions(limiter, "192.0.2.1", count: 2, at: 100) == [.admit, .refuse])
        #expect(decisions(limiter, "192.0.2.1", count: 1, at: 150) == [.refuse])
        #expect(decisions(limiter, "192.0.2.1", count: 1, at: 200) == [.admit])
        // A long pause refills to the burst, never beyond.
        #expect(decisions(limiter, "192.0.2.1", count: 6, at: 60_000) == Array(repeating: .admit, count: 5) + [.refuse])
        #expect(limiter.trackedPrefixes == 1)
    }

    @Test func burstDefaultsToTwiceTheRate() {
        #expect(TokenBucketRateLimiter.Configuration(queriesPerSecond: 20).burst == 40)
        #expect(TokenBucketRateLimiter.Configuration(queriesPerSecond: 0.1).burst == 1)
    }

    @Test func prefixGrouping() {
        let limiter = TokenBucketRateLimiter(
            configuration: .init(queriesPerSecond: 1, burst: 2, ipv4PrefixLength: 24, ipv6PrefixLength: 56)
        )
        #expect(decisions(limiter, "192.0.2.1", count: 2, at: 0) == [.admit, .admit])
        #expect(decisions(limiter, "192.0.2.200", count: 1, at: 0) == [.refuse], "same /24 shares the bucket")
        #expect(decisions(limiter, "192.0.3.1", count: 1, at: 0) == [.admit], "another /24 does not")
        #expect(decisions(limiter, "2001:db8:0:100::1", count: 2, at: 0) == [.admit, .admit])
        #expect(decisions(limiter, "2001:db8:0:1ff::9", count: 1, at: 0) == [.refuse], "same /56")
        #expect(decisions(limiter, "2001:db8:0:200::1", count: 1, at: 0) == [.admit], "another /56")
        // An IPv4-mapped address is the IPv4 client.
        #expect(decisions(limiter, "::ffff:192.0.2.9", count: 1, at: 0) == [.refuse])
        let exact = TokenBucketRateLimiter(configuration: .init(queriesPerSecond: 1, burst: 1))
        #expect(decisions(exact, "192.0.2.1", count: 1, at: 0) == [.admit])
        #expect(decisions(exact, "192.0.2.2", count: 1, at: 0) == [.admit], "/32 by default")
        #expect(decisions(exact, "2001:db8::1", count: 1, at: 0) == [.admit])
        #expect(decisions(exact, "2001:db8::2", count: 1, at: 0) == [.refuse], "/64 by default")
    }

    @Test func eachAction() {
        let drop = TokenBucketRateLimiter(configuration: .init(queriesPerSecond: 1, burst: 1, action: .drop))
        #expect(decisions(drop, "192.0.2.1", count: 3, at: 0) == [.admit, .drop, .drop])

        let slip = TokenBucketRateLimiter(
            configuration: .init(queriesPerSecond: 1, burst: 1, action: .slip, slipInterval: 3)
        )
        #expect(decisions(slip, "192.0.2.1", count: 7, at: 0) == [.admit, .drop, .drop, .slip, .drop, .drop, .slip])
        #expect(
            decisions(slip, "192.0.2.1", count: 2, at: 0, clientProtocol: .tcp) == [.refuse, .refuse],
            "TCP is never slipped"
        )

        let everyOne = TokenBucketRateLimiter(
            configuration: .init(queriesPerSecond: 1, burst: 1, action: .slip, slipInterval: 1)
        )
        #expect(decisions(everyOne, "192.0.2.1", count: 3, at: 0) == [.admit, .slip, .slip])
    }

    @Test func exemptNetworksAreNeverLimited() {
        let limiter = TokenBucketRateLimiter(
            configuration: .init(queriesPerSecond: 1, burst: 1, exempt: [IPNetwork("10.0.0.0/8")!])
        )
        #expect(decisions(limiter, "10.1.2.3", count: 100, at: 0).allSatisfy { $0 == .admit })
        #expect(decisions(limiter, "192.0.2.1", count: 2, at: 0) == [.admit, .refuse])
        #expect(limiter.trackedPrefixes == 1, "exempt clients are not tracked")
    }

    @Test func aMillionSpoofedSourcesCannotGrowTheTable() {
        let recorded = RecordedMetrics()
        let limiter = TokenBucketRateLimiter(
            configuration: .init(queriesPerSecond: 5, burst: 5, maximumPrefixes: 10_000),
            metrics: recorded.metrics
        )
        var admitted = 0
        for index in 0..<1_000_000 {
            let address = ClientAddress(IPv4Address(rawValue: 0x0A00_0000 &+ UInt32(index)))
            if limiter.decide(for: address, clientProtocol: .udp, now: Self.at(Int64(index / 1000))) == .admit {
                admitted += 1
            }
        }
        #expect(limiter.trackedPrefixes <= 10_000)
        #expect(recorded.count(DNSProxyMetrics.Name.rateLimitEvictions) >= 990_000)
        #expect(admitted == 1_000_000)
        // A real client still gets its own bucket and is limited correctly.
        #expect(decisions(limiter, "192.0.2.1", count: 6, at: 2_000) == Array(repeating: .admit, count: 5) + [.refuse])
    }
}

@Suite struct AccessControlTests {
    @Test func theDefaultListAdmitsLocalNetworksOnly() {
        let acl = AccessControlList.default
        for allowed in [
            "127.0.0.1", "10.1.2.3", "172.16.5.4", "172.31.255.255", "192.168.1.1", "169.254.0.9", "100.64.0.1",
            "::1", "fd00::1", "fe80::1", "::ffff:192.168.1.1", "::ffff:127.0.0.1",
        ] {
            #expect(acl.allows(TokenBucketRateLimiterTests.client(allowed)), "\(allowed)")
        }
        for denied in ["8.8.8.8", "172.32.0.1", "100.128.0.1", "2001:db8::1", "::ffff:8.8.8.8", "192.0.2.1"] {
            #expect(!acl.allows(TokenBucketRateLimiterTests.client(denied)), "\(denied)")
        }
        #expect(!acl.isOpen && AccessControlList.everyone.isOpen)
        #expect(AccessControlList.everyone.allows(TokenBucketRateLimiterTests.client("8.8.8.8")))
    }

    @Test func networksParseStrictly() {
        #expect(IPNetwork("192.168.0.0/16")?.description == "192.168.0.0/16")
        #expect(IPNetwork("2001:db8::/32")?.description == "2001:db8::/32")
        #expect(IPNetwork("192.0.2.7")?.description == "192.0.2.7/32")
        #expect(IPNetwork("0.0.0.0/0")?.isEverything == true)
        #expect(IPNetwork.loopbackIPv4.description == "127.0.0.0/8" && IPNetwork.loopbackIPv6.description == "::1/128")
        #expect(IPNetwork.loopbackIPv4.contains(TokenBucketRateLimiterTests.client("127.9.8.7")))
        #expect(!IPNetwork.loopbackIPv4.contains(TokenBucketRateLimiterTests.client("128.0.0.1")))
        #expect(IPNetwork.loopbackIPv6.contains(TokenBucketRateLimiterTests.client("::1")))
        #expect(!IPNetwork.loopbackIPv6.contains(TokenBucketRateLimiterTests.client("::2")))
        for bad in ["192.168.0.1/16", "10.0.0.0/33", "2001:db8::1/32", "::/129", "nope", "10.0.0.0/x", ""] {
            #expect(IPNetwork(bad) == nil, "\(bad)")
        }
        let v6 = IPNetwork("2001:db8:abcd::/48")!
        #expect(v6.contains(TokenBucketRateLimiterTests.client("2001:db8:abcd:1::1")))
        #expect(!v6.contains(TokenBucketRateLimiterTests.client("2001:db8:abce::1")))
        #expect(!v6.contains(TokenBucketRateLimiterTests.client("192.0.2.1")))
        #expect(IPNetwork("2001:db8::1:0:0/96")!.contains(TokenBucketRateLimiterTests.client("2001:db8::1:2:3")))
    }

    @Test func clientAddressesComeFromSocketAddresses() throws {
        #expect(ClientAddress(try SocketAddress(ipAddress: "192.0.2.1", port: 53))?.description == "192.0.2.1")
        #expect(ClientAddress(try SocketAddress(ipAddress: "2001:db8::7", port: 53))?.description == "2001:db8::7")
        #expect(
            ClientAddress(try SocketAddress(ipAddress: "::ffff:10.0.0.1", port: 53))
                == ClientAddress(IPv4Address(10, 0, 0, 1))
        )
    }
}
