import NIOCore

/// Sends one DNS query to upstream resolvers and returns the reply.
///
/// The reply carries the query's own ID and question: implementations rewrite IDs on the wire as
/// they need, and restore them. A failure is always an ``UpstreamError`` that names the upstream.
///
/// Both requirements take the event loop to answer on, so that the proxy can answer a cache miss on
/// the loop that read the query, without a task hop. A conforming type implements the future-based
/// `send`; the completion-based one has a default built on it, and is worth implementing natively
/// when the transport sits on the query path (it saves a promise per query). Embedders can use the
/// `async` convenience instead.
public protocol UpstreamTransport: Sendable {
    /// Sends `query` and completes with the reply, or fails with ``UpstreamError``.
    ///
    /// - Parameters:
    ///   - query: One DNS query in wire form.
    ///   - deadline: When to give up; the future fails with ``UpstreamError/Code/timeout`` then.
    ///   - eventLoop: The event loop to complete the future on, and the one whose connections to use.
    func send(_ query: ByteBuffer, deadline: NIODeadline, on eventLoop: any EventLoop) -> EventLoopFuture<ByteBuffer>

    /// Sends `query` and calls `completion` once, on `eventLoop`, with the reply or the error.
    ///
    /// The same contract as the future-based requirement, without a future: a transport that calls
    /// another (the pool calls its members, the proxy calls the pool) saves a promise and a callback
    /// per query. The default implementation calls the future-based one; the library's transports
    /// implement both natively.
    ///
    /// - Parameters:
    ///   - query: One DNS query in wire form.
    ///   - deadline: When to give up with ``UpstreamError/Code/timeout``.
    ///   - eventLoop: The event loop to call `completion` on, and the one whose connections to use.
    ///   - completion: Receives the reply, or an ``UpstreamError``.
    func send(
        _ query: ByteBuffer,
        deadline: NIODeadline,
        on eventLoop: any EventLoop,
        completion: @escaping @Sendable (Result<ByteBuffer, UpstreamError>) -> Void
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
    /// Nothing to start.
    public func start(on eventLoop: any EventLoop) {}

    /// Nothing to close.
    public func shutdown() async {}

    public func send(
        _ query: ByteBuffer,
        deadline: NIODeadline,
        on eventLoop: any EventLoop,
        completion: @escaping @Sendable (Result<ByteBuffer, UpstreamError>) -> Void
    ) {
        send(query, deadline: deadline, on: eventLoop).whenComplete { result in
            completion(result.mapError { UpstreamError.wrapping($0, upstream: "\(Self.self)") })
        }
    }

    /// A future-based `send` built on the completion-based one, for transports that implement that.
    func futureSend(
        _ query: ByteBuffer,
        deadline: NIODeadline,
        on eventLoop: any EventLoop
    ) -> EventLoopFuture<ByteBuffer> {
        let promise = eventLoop.makePromise(of: ByteBuffer.self)
        send(query, deadline: deadline, on: eventLoop) { promise.completeWith($0.mapError { $0 }) }
        return promise.futureResult
    }

    /// Sends `query` and returns the reply.
    ///
    /// - Parameters:
    ///   - query: One DNS query in wire form.
    ///   - timeout: How long to wait for the reply.
    ///   - eventLoop: The event loop whose connections to use.
    /// - Throws: ``UpstreamError``.
    public func send(
        _ query: ByteBuffer,
        timeout: TimeAmount,
        on eventLoop: any EventLoop
    ) async throws(UpstreamError) -> ByteBuffer {
        do {
            return try await send(query, deadline: .now() + timeout, on: eventLoop).get()
        } catch {
            throw UpstreamError.wrapping(error, upstream: "\(Self.self)")
        }
    }
}
