import NIOCore

/// Sends one DNS query to upstream resolvers and returns the reply.
///
/// The reply carries the query's own ID and question: implementations rewrite IDs on the wire as
/// they need, and restore them. A failure is always an ``UpstreamError`` that names the upstream.
///
/// The requirement is future-based so that the proxy can answer a cache miss on the event loop that
/// read the query, without a task hop. Embedders can use the `async` convenience instead.
public protocol UpstreamTransport: Sendable {
    /// Sends `query` and completes with the reply, or fails with ``UpstreamError``.
    ///
    /// - Parameters:
    ///   - query: One DNS query in wire form.
    ///   - deadline: When to give up; the future fails with ``UpstreamError/Code/timeout`` then.
    ///   - eventLoop: The event loop to complete the future on, and the one whose connections to use.
    func send(_ query: ByteBuffer, deadline: NIODeadline, on eventLoop: any EventLoop) -> EventLoopFuture<ByteBuffer>
}

extension UpstreamTransport {
    /// Sends `query` and returns the reply.
    ///
    /// - Parameters:
    ///   - query: One DNS query in wire form.
    ///   - timeout: How long to wait for the reply.
    ///   - eventLoop: The event loop whose connections to use.
    /// - Throws: ``UpstreamError``.
    public func send(_ query: ByteBuffer, timeout: TimeAmount, on eventLoop: any EventLoop) async throws(UpstreamError) -> ByteBuffer {
        do {
            return try await send(query, deadline: .now() + timeout, on: eventLoop).get()
        } catch let error as UpstreamError {
            throw error
        } catch {
            throw UpstreamError(.connectionFailed, upstream: "unknown", detail: "\(error)")
        }
    }
}
