import NIOCore

/// How a query reached the proxy, which decides the size limit and truncation of the reply.
public struct DNSClientTransport: Hashable, Sendable, CustomStringConvertible {
    let isUDP: Bool
    public let description: String

    /// Plain DNS over UDP: replies are limited to the client's EDNS UDP size.
    public static let udp = DNSClientTransport(isUDP: true, description: "udp")
    /// Plain DNS over TCP: replies up to 65,535 octets.
    public static let tcp = DNSClientTransport(isUDP: false, description: "tcp")
}

/// One client query, as a handler sees it.
public struct DNSClientQuery: Sendable {
    /// The query in wire form, exactly as received.
    public var message: ByteBuffer
    /// The client's address.
    public var client: SocketAddress
    /// How the query arrived.
    public var transport: DNSClientTransport

    /// Creates a client query.
    public init(message: ByteBuffer, client: SocketAddress, transport: DNSClientTransport) {
        self.message = message
        self.client = client
        self.transport = transport
    }
}

/// Turns one client query into one reply, or into nothing (a drop).
///
/// Listeners call it on the event loop that read the query; the returned future should complete on
/// that loop, so that a reply goes out without a thread hop.
public protocol DNSQueryHandler: Sendable {
    /// Answers one query.
    ///
    /// - Parameters:
    ///   - query: The query, the client and the transport it came over.
    ///   - eventLoop: The event loop that read the query.
    /// - Returns: The reply to send, or `nil` to send nothing.
    func handle(_ query: DNSClientQuery, on eventLoop: any EventLoop) -> EventLoopFuture<ByteBuffer?>
}
