import NIOCore
import Testing

@testable import DoTCore

extension ParsedQuery {
    /// `message` parsed as the query path parses it, filed under its own key unless one is given (to
    /// forge a hash collision).
    init(
        _ message: ByteBuffer,
        client: SocketAddress,
        clientProtocol: ClientProtocol = .udp,
        key: DNSCacheKey? = nil
    ) throws {
        let parsed = try ParsedDNSMessage(message)
        self.init(
            message: parsed,
            key: try #require(key ?? DNSCacheKey(parsed)),
            client: client,
            clientProtocol: clientProtocol,
            arrival: .now()
        )
    }
}
