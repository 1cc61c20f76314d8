import Logging
import NIOCore
import Testing

@testable import DoTCore

/// The last stage, alone: what a client may receive.
struct ReplyShaperTests {
    static let client = try! SocketAddress(ipAddress: "127.0.0.1", port: 4000)

    func parsed(udpSize: UInt16? = nil, clientProtocol: ClientProtocol = .udp) throws -> ParsedQuery {
        let message = try DNSMessage.query(
            name: "big.test.",
            type: .txt,
            id: 12,
            edns: udpSize.map { EDNSRecord(udpPayloadSize: $0) }
        ).encoded()
        return try ParsedQuery(message, client: Self.client, clientProtocol: clientProtocol)
    }

    /// A reply of about 1,500 octets to `query`, as a cache would build it.
    func bigReply(to query: ParsedQuery) throws -> ByteBuffer {
        var reply = try DNSMessage(decoding: query.message.buffer)
        reply.header.isResponse = true
        let strings = (1...6).map { Array(repeating: UInt8(0x30 + $0), count: 250) }
        reply.answers = [DNSResourceRecord(name: "big.test.", ttl: 60, rdata: .txt(strings))]
        return try reply.encoded()
    }

    @Test func aCachedReplyTooLargeForUDPIsTruncatedAndCounted() throws {
        let recorded = RecordedMetrics()
        let shaper = ReplyShaper(maximumUDPReplySize: 1232, metrics: recorded.metrics)
        // The client asks for 4,096; the cap of 1,232 wins.
        let udp = try parsed(udpSize: 4096)
        let truncated = try DNSMessage(decoding: shaper.reply(to: udp, cached: bigReply(to: udp)))
        #expect(truncated.header.isTruncated && truncated.answers.isEmpty && truncated.header.id == 12)
        // Over TCP it passes whole.
        let tcp = try parsed(clientProtocol: .tcp)
        let whole = try bigReply(to: tcp)
        #expect(shaper.reply(to: tcp, cached: whole) == whole)
        #expect(recorded.count(DNSProxyMetrics.Name.truncated) == 1)
        #expect(shaper.udpLimit(for: try parsed().view) == 512, "no EDNS: 512 octets")
    }

    @Test func aFailureIsSERVFAILWithItsReasonForEDNSClients() throws {
        let shaper = ReplyShaper(maximumUDPReplySize: 1232, metrics: RecordedMetrics().metrics)
        let query = try parsed(udpSize: 1232)
        let failure = UpstreamError(.timeout, upstream: "127.0.0.1:853")
        let reply = try DNSMessage(decoding: shaper.serverFailure(to: query, error: failure))
        #expect(reply.header.responseCode == .serverFailure && reply.header.id == 12)
        let option = try #require(reply.edns?.options.first { $0.code == .extendedError })
        #expect(ExtendedDNSError(option)?.code == failure.extendedDNSError.code)
    }
}
