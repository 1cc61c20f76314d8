import NIOCore
import Testing

@testable import DoTCore

/// The query the forwarding stage sends upstream: the client's header and question with the proxy's
/// own OPT. Its view is derived from the client's rather than parsed, so it must match a parse.
struct UpstreamQueryTests {
    @Test(arguments: ["a", "no-edns", "padded", "cookie", "dnssec-do", "big-txt"])
    func theDerivedViewIndexesTheUpstreamQueryAsAParseDoes(fixture: String) throws {
        let client = try ParsedDNSMessage(Fixtures.query(fixture))
        let upstream = DNSResponseBuilder.upstreamQuery(from: client, allocator: ByteBufferAllocator())
        #expect(String(describing: upstream.view) == String(describing: try DNSMessageView(upstream.buffer)))
        let decoded = try DNSMessage(decoding: upstream.buffer)
        let original = try DNSMessage(decoding: client.buffer)
        #expect(decoded.header == original.header && decoded.questions == original.questions)
        #expect(decoded.edns?.options == [] && decoded.edns?.dnssecOK == (original.edns?.dnssecOK ?? false))
        #expect(decoded.answers.isEmpty && decoded.authorities.isEmpty && decoded.additionals.isEmpty)
    }
}
