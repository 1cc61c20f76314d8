import NIOCore

/// One client query, as a handler sees it.
public struct DNSClientQuery: Sendable {
    /// The query in wire form, exactly as received.
    ///
    /// It may share storage with the listener's read buffer (over UDP, one buffer holds a whole
    /// batch of datagrams, 32 KiB). A handler that keeps the query after answering returns, for
    /// example while it waits for an upstream, should keep a copy of its own
    /// (`ByteBufferAllocator().buffer(buffer: message)`), or it holds the whole read buffer meanwhile.
    public var message: ByteBuffer
    /// The client's address.
    public var client: SocketAddress
    /// How the query arrived.
    public var clientProtocol: ClientProtocol

    /// Creates a client query.
    public init(message: ByteBuffer, client: SocketAddress, clientProtocol: ClientProtocol) {
        self.message = message
        self.client = client
        self.clientProtocol = clientProtocol
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

    /// Answers one query, at once when it can. Listeners call this; the default wraps ``handle(_:on:)``.
    ///
    /// - Parameters:
    ///   - query: The query, the client and the transport it came over.
    ///   - eventLoop: The event loop that read the query.
    /// - Returns: The reply now, or a future of it.
    func respond(to query: DNSClientQuery, on eventLoop: any EventLoop) -> DNSQueryResponse
}

extension DNSQueryHandler {
    public func respond(to query: DNSClientQuery, on eventLoop: any EventLoop) -> DNSQueryResponse {
        .later(handle(query, on: eventLoop))
    }
}
