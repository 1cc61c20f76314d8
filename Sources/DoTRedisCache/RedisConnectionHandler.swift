import NIOCore

/// One pipelined Redis connection: requests are written as they come, and replies, which Redis sends
/// in order, complete them in order. A request may be several commands sent together (`GET` then
/// `PTTL`) that complete together.
///
/// Any protocol error or close fails every waiting request and closes the connection; the client
/// reconnects.
final class RedisConnectionHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = Request
    typealias OutboundOut = ByteBuffer

    /// What is called with a request's replies, or the error that ended the wait; on the loop.
    typealias Completion = @Sendable (Result<[RESPValue], RedisError>) -> Void

    /// Commands to send, and where their replies go.
    struct Request {
        var bytes: ByteBuffer
        var replyCount: Int
        var completion: Completion
    }

    private struct Waiting {
        var remaining: Int
        var replies: [RESPValue]
        let completion: Completion
    }

    private var waiting = CircularBuffer<Waiting>()
    private let reader = RESPReader()

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let request = unwrapOutboundIn(data)
        waiting.append(Waiting(remaining: request.replyCount, replies: [], completion: request.completion))
        context.write(wrapOutboundOut(request.bytes), promise: promise)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        do throws(RedisError) {
            try reader.feed(unwrapInboundIn(data))
            while let reply = try reader.next() {
                guard !waiting.isEmpty else { throw RedisError(.protocolError, "a reply nobody asked for") }
                waiting[waiting.startIndex].replies.append(reply)
                waiting[waiting.startIndex].remaining -= 1
                if waiting[waiting.startIndex].remaining == 0 {
                    let done = waiting.removeFirst()
                    done.completion(.success(done.replies))
                }
            }
        } catch {
            failAll(error)
            context.close(promise: nil)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        failAll(RedisError(.connectionClosed, "\(error)"))
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        failAll(RedisError(.connectionClosed))
        context.fireChannelInactive()
    }

    private func failAll(_ error: RedisError) {
        while let next = waiting.popFirst() { next.completion(.failure(error)) }
    }
}
