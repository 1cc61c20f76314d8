import NIOCore

/// Sends one DNS query to upstream resolvers and returns the reply.
///
/// The query arrives parsed and the reply leaves parsed: a transport checks that the reply answers
/// the query (``ParsedDNSMessage/answers(_:)``: a response with the query's own ID and question) and
/// delivers nothing else, so the caller need not check or parse it again. Implementations rewrite IDs
/// on the wire as they need, and restore them. A failure is always an ``UpstreamError`` that names the
/// upstream.
///
/// The requirement takes the event loop to answer on, so that the proxy can answer a cache miss on the
/// loop that read the query, without a task hop. Embedders can use the future-based or `async`
/// conveniences, which take and return plain buffers.
public protocol UpstreamTransport: Sendable {
    /// What errors and logs call the upstream: its address, `tls://` name, or `pool`. The type's name
    /// by default.
    var name: String { get }

    /// Sends `query` and calls `completion` once, on `eventLoop`, with the reply or the error.
    ///
    /// - Parameters:
    ///   - query: One DNS query.
    ///   - deadline: When to give up with ``UpstreamError/Code/timeout``.
    ///   - eventLoop: The event loop to call `completion` on, and the one whose connections to use.
    ///   - completion: Receives the reply, which answers `query`, or an ``UpstreamError``.
    func send(
        _ query: ParsedDNSMessage,
        deadline: NIODeadline,
        on eventLoop: any EventLoop,
        completion: @escaping @Sendable (Result<ParsedDNSMessage, UpstreamError>) -> Void
    )

    /// Gets ready to serve, once, when its owner starts: a transport that resolves a host name starts
    /// resolving, so the first query does not wait. The default does nothing.
    ///
    /// - Parameter eventLoop: Where to run what starting needs.
    func start(on eventLoop: any EventLoop)

    /// Closes the transport's connections, when its owner stops. Queries sent afterwards may open new
    /// ones. The default does nothing.
    func shutdown() async
}

extension UpstreamTransport {
    /// The type's name.
    public var name: String { "\(Self.self)" }

    /// Nothing to start.
    public func start(on eventLoop: any EventLoop) {}

    /// Nothing to close.
    public func shutdown() async {}

    /// Sends `query` and completes with the reply, or fails with ``UpstreamError``.
    ///
    /// - Parameters:
    ///   - query: One DNS query.
    ///   - deadline: When to give up; the future fails with ``UpstreamError/Code/timeout`` then.
    ///   - eventLoop: The event loop to complete the future on, and the one whose connections to use.
    public func send(
        _ query: ParsedDNSMessage,
        deadline: NIODeadline,
        on eventLoop: any EventLoop
    ) -> EventLoopFuture<ParsedDNSMessage> {
        let promise = eventLoop.makePromise(of: ParsedDNSMessage.self)
        send(query, deadline: deadline, on: eventLoop) { promise.completeWith($0.mapError { $0 }) }
        return promise.futureResult
    }

    /// Sends the query in `message` and completes with the reply's octets; a query that does not
    /// parse fails with ``UpstreamError/Code/malformedQuery``.
    ///
    /// - Parameters:
    ///   - message: One DNS query in wire form.
    ///   - deadline: When to give up; the future fails with ``UpstreamError/Code/timeout`` then.
    ///   - eventLoop: The event loop to complete the future on, and the one whose connections to use.
    public func send(
        _ message: ByteBuffer,
        deadline: NIODeadline,
        on eventLoop: any EventLoop
    ) -> EventLoopFuture<ByteBuffer> {
        let query: ParsedDNSMessage
        do {
            query = try ParsedDNSMessage(message)
        } catch {
            return eventLoop.makeFailedFuture(
                UpstreamError(.malformedQuery, upstream: name, detail: "\(error)")
            )
        }
        return send(query, deadline: deadline, on: eventLoop).map(\.buffer)
    }

    /// Sends the query in `message` and returns the reply's octets.
    ///
    /// - Parameters:
    ///   - message: One DNS query in wire form.
    ///   - timeout: How long to wait for the reply.
    ///   - eventLoop: The event loop whose connections to use.
    /// - Throws: ``UpstreamError``.
    public func send(
        _ message: ByteBuffer,
        timeout: TimeAmount,
        on eventLoop: any EventLoop
    ) async throws(UpstreamError) -> ByteBuffer {
        do {
            return try await send(message, deadline: .now() + timeout, on: eventLoop).get()
        } catch {
            throw UpstreamError.wrapping(error, upstream: name)
        }
    }
}
