import DoTCore
import NIOCore
import Testing

@testable import DoTRedisCache

/// URLs, the breaker, keys and stored values.
@Suite struct RedisSettingsTests {
    @Test func urlsParseAndNeverShowThePassword() throws {
        let plain = try RedisEndpoint(url: "redis://cache.internal")
        #expect(plain.host == "cache.internal" && plain.port == 6379 && plain.database == 0 && !plain.usesTLS)
        #expect(plain.password == nil && plain.username == nil)
        let full = try RedisEndpoint(url: "rediss://dns:s3cr%40t@[::1]:6380/2")
        #expect(full.host == "::1" && full.port == 6380 && full.database == 2 && full.usesTLS)
        #expect(full.username == "dns" && full.password == "s3cr@t")
        #expect(full.description == "rediss://dns:***@[::1]:6380/2")
        let passwordOnly = try RedisEndpoint(url: "redis://:hunter2@127.0.0.1:7000")
        #expect(passwordOnly.username == nil && passwordOnly.password == "hunter2")
        #expect(!passwordOnly.description.contains("hunter2"))
        for bad in [
            "http://x", "redis://", "redis://h:0", "redis://h:99999", "redis://h/x", "redis://[::1", "redis://:pw@",
        ] {
            #expect(throws: RedisError.self, "\(bad)") { try RedisEndpoint(url: bad) }
        }
        do {
            _ = try RedisEndpoint(url: "redis://:topsecret@h:bad")
        } catch {
            #expect(!error.description.contains("topsecret"))
        }
    }

    @Test func theBreakerOpensAfterTheThresholdProbesAndBacksOff() {
        var breaker = RedisCircuitBreaker(threshold: 3, minimumBackoff: .seconds(1), maximumBackoff: .seconds(3))
        let start = NIODeadline.uptimeNanoseconds(1_000_000_000)
        // Each step: (an admit at an offset in ms, or a failure at it, or a success) and what it returns.
        enum Step {
            case admit(Int64, Bool)
            case fail(Int64, opens: Bool)
            case succeed(closes: Bool)
        }
        let steps: [Step] = [
            .admit(0, true), .fail(0, opens: false), .fail(0, opens: false),
            .succeed(closes: false),  // a success resets the count
            .fail(0, opens: false), .fail(0, opens: false), .fail(0, opens: true),  // three in a row
            .succeed(closes: false),  // a late answer to a lookup sent before it opened
            .admit(999, false), .admit(1000, true),  // the probe after 1 s
            .admit(1000, false),  // only one
            .fail(1000, opens: false),  // the probe failed: open for 2 s
            .admit(2999, false), .admit(3000, true),
            .fail(3000, opens: false),  // 4 s, capped at 3
            .admit(5999, false), .admit(6000, true),
            .succeed(closes: true), .admit(6000, true),
        ]
        for (index, step) in steps.enumerated() {
            switch step {
            case .admit(let at, let expected):
                let admitted = breaker.admit(now: start + .milliseconds(at))
                #expect(admitted == expected, "step \(index)")
            case .fail(let at, let opens):
                let opened = breaker.recordFailure(now: start + .milliseconds(at))
                #expect(opened == opens, "step \(index)")
            case .succeed(let closes):
                let closed = breaker.recordSuccess()
                #expect(closed == closes, "step \(index)")
            }
        }
        #expect(!breaker.isOpen)
    }

    @Test func failuresInNoTimeDoNotOpenTheBreakerUntilTheySpanItsWindow() {
        func breaker() -> RedisCircuitBreaker {
            RedisCircuitBreaker(
                threshold: 3,
                span: .milliseconds(100),
                minimumBackoff: .seconds(1),
                maximumBackoff: .seconds(3)
            )
        }
        let start = NIODeadline.uptimeNanoseconds(1_000_000_000)
        // Failures at these offsets (ms); whether the last one opened the breaker.
        func opens(_ offsets: [Int64], succeedingAfter: Int? = nil) -> Bool {
            var subject = breaker()
            var opened = false
            for (index, offset) in offsets.enumerated() {
                opened = subject.recordFailure(now: start + .milliseconds(offset))
                if index == succeedingAfter { _ = subject.recordSuccess() }
            }
            return opened
        }
        // A stall: twenty lookups time out together.
        #expect(!opens(Array(repeating: 0, count: 20)))
        // Still failing 100 ms after the first: Redis is down.
        #expect(!opens(Array(repeating: 0, count: 20) + [99]))
        #expect(opens(Array(repeating: 0, count: 20) + [100]))
        #expect(opens([0, 50, 100]))
        // A success in between starts the count and the window over.
        #expect(!opens([0, 50, 100, 150], succeedingAfter: 1))
        #expect(opens([0, 50, 100, 150, 200], succeedingAfter: 1))
    }

    func message(
        _ name: DNSName,
        type: DNSRecordType = .a,
        dnssecOK: Bool = false,
        checkingDisabled: Bool = false
    )
        throws -> ParsedDNSMessage
    {
        var query = DNSMessage.query(name: name, type: type, id: 1, edns: EDNSRecord(dnssecOK: dnssecOK))
        query.header.checkingDisabled = checkingDisabled
        return try ParsedDNSMessage(try query.encoded())
    }

    func key(_ message: ParsedDNSMessage) -> String? {
        RedisCacheKey.make(prefix: "p:", for: message).map { String(decoding: $0, as: UTF8.self) }
    }

    @Test func keysIgnoreCaseAndKeepTypeClassAndDNSSECBits() throws {
        #expect(key(try message("WwW.Example.COM.")) == "p:v1:www.example.com.:1:1:")
        #expect(
            key(try message("www.example.com.", type: .aaaa, dnssecOK: true, checkingDisabled: true))
                == "p:v1:www.example.com.:28:1:dc"
        )
        #expect(key(try message(".", type: .ns)) == "p:v1:.:2:1:")
        let odd = try DNSName(labels: [
            [UInt8(ascii: "a"), UInt8(ascii: "."), 0xFF, UInt8(ascii: "\\")], Array("test".utf8),
        ])
        #expect(key(try message(odd)) == "p:v1:a\\.\\255\\\\.test.:1:1:")
    }

    @Test func storedValuesRoundTripAndOthersAreRefused() throws {
        var reply = DNSMessage.query(name: "a.test.", type: .a, id: 1, edns: nil)
        reply.header.isResponse = true
        reply.answers = [DNSResourceRecord(name: "a.test.", ttl: 60, rdata: .a(IPv4Address(192, 0, 2, 1)))]
        let parsed = try ParsedDNSMessage(try reply.encoded())
        let encoded = RedisCacheEntry(keptFor: 60_000, reply: parsed).encoded
        let decoded = try #require(RedisCacheEntry(ByteBuffer(bytes: encoded)))
        #expect(decoded.keptFor == 60_000 && decoded.reply.buffer == parsed.buffer)
        #expect(RedisCacheEntry(ByteBuffer(bytes: [2] + encoded.dropFirst())) == nil)
        #expect(RedisCacheEntry(ByteBuffer(bytes: encoded.prefix(20))) == nil)
        let query = try ParsedDNSMessage(try DNSMessage.query(name: "a.test.", type: .a, id: 1, edns: nil).encoded())
        #expect(
            RedisCacheEntry(
                ByteBuffer(bytes: [1] + Array(repeating: 0, count: 7) + [1] + Array(query.buffer.readableBytesView))
            ) == nil
        )
    }
}
