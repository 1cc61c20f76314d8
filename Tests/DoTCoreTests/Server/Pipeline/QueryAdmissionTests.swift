import Logging
import NIOCore
import Testing

@testable import DoTCore

/// The first stage, alone: what is turned away at the door, and how it is counted.
struct QueryAdmissionTests {
    static let inside = try! SocketAddress(ipAddress: "10.1.2.3", port: 4000)
    static let outside = try! SocketAddress(ipAddress: "192.0.2.9", port: 4000)

    func admission(
        deniedAction: AccessControlList.DeniedAction = .refuse,
        rateLimiter: (any QueryRateLimiter)? = nil,
        recorded: RecordedMetrics
    ) -> QueryAdmission {
        QueryAdmission(
            accessControl: AccessControlList(allowed: [IPNetwork("10.0.0.0/8")!]),
            deniedAction: deniedAction,
            rateLimiter: rateLimiter,
            metrics: recorded.metrics
        )
    }

    func query(from client: SocketAddress = inside, _ message: ByteBuffer? = nil) throws -> DNSClientQuery {
        let message = try message ?? DNSMessage.query(name: "a.test.", type: .a, id: 3).encoded()
        return DNSClientQuery(message: message, client: client, clientProtocol: .udp)
    }

    func reply(_ outcome: QueryAdmission.Outcome) throws -> DNSMessage? {
        guard case .answered(let reply) = outcome else { return nil }
        return try reply.map { try DNSMessage(decoding: $0) }
    }

    @Test func aShortPacketOrAReplyIsDroppedAndCounted() throws {
        let recorded = RecordedMetrics()
        let door = admission(recorded: recorded)
        guard case .answered(nil) = door.admit(try query(ByteBuffer(bytes: [1, 2, 3])), now: .now()) else {
            Issue.record("a packet shorter than a header must be dropped")
            return
        }
        var response = DNSMessage.query(name: "a.test.", type: .a, id: 3)
        response.header.isResponse = true
        guard case .answered(nil) = door.admit(try query(response.encoded()), now: .now()) else {
            Issue.record("a packet with QR set must be dropped")
            return
        }
        #expect(recorded.count(DNSProxyMetrics.Name.malformed, [("action", "dropped")]) == 2)
    }

    @Test func aClientOutsideTheListIsRefusedOrDropped() throws {
        let recorded = RecordedMetrics()
        let refused = try reply(admission(recorded: recorded).admit(try query(from: Self.outside), now: .now()))
        #expect(refused?.header.responseCode == .refused && refused?.header.id == 3)
        guard
            case .answered(nil) = admission(deniedAction: .drop, recorded: recorded).admit(
                try query(from: Self.outside),
                now: .now()
            )
        else {
            Issue.record("with .drop, nothing is sent")
            return
        }
        #expect(recorded.count(DNSProxyMetrics.Name.accessDenied) == 2)
        guard case .admitted = admission(recorded: recorded).admit(try query(), now: .now()) else {
            Issue.record("a client inside the list is admitted")
            return
        }
    }

    @Test func theLimitersDecisionIsAppliedAndCountedOnlyWhenThereIsALimiter() throws {
        let recorded = RecordedMetrics()
        let limiter = TokenBucketRateLimiter(
            configuration: .init(queriesPerSecond: 0.001, burst: 1, action: .slip, slipInterval: 1)
        )
        let door = admission(rateLimiter: limiter, recorded: recorded)
        let now = NIODeadline.now()
        guard case .admitted = door.admit(try query(), now: now) else {
            Issue.record("the first query fits the burst")
            return
        }
        let slipped = try #require(try reply(door.admit(try query(), now: now)))
        #expect(slipped.header.isTruncated && slipped.answers.isEmpty && slipped.header.responseCode == .noError)
        #expect(recorded.count(DNSProxyMetrics.Name.rateLimitDecisions, [("action", "admit")]) == 1)
        #expect(recorded.count(DNSProxyMetrics.Name.rateLimitDecisions, [("action", "slip")]) == 1)

        let unlimited = RecordedMetrics()
        _ = admission(recorded: unlimited).admit(try query(), now: now)
        #expect(unlimited.count(DNSProxyMetrics.Name.rateLimitDecisions, [("action", "admit")]) == 0)
    }
}
