import NIOCore

/// One query on its way to an upstream: the padded query framed for the stream, the client's ID to
/// restore, and whom to tell the outcome. Owned by one event loop.
final class DoTQuery {
    private let completion: @Sendable (Result<ParsedDNSMessage, UpstreamError>) -> Void
    /// The two-octet length prefix and the padded query, written to the connection as it is; the ID
    /// is overwritten with the connection's ID when sent.
    var frame: ByteBuffer
    /// The query as the client sent it, for matching the reply's question.
    let query: ParsedDNSMessage
    /// When the query fails with a timeout; the pool's one timer enforces it.
    let deadline: NIODeadline
    /// Whether the query has already been moved to a fresh connection after a reset.
    var retried = false
    var isDone = false

    /// Builds the frame in one buffer: length prefix, then the query padded to `paddingBlockSize`.
    init(
        query: ParsedDNSMessage,
        paddingBlockSize: Int,
        deadline: NIODeadline,
        completion: @escaping @Sendable (Result<ParsedDNSMessage, UpstreamError>) -> Void
    ) {
        var frame = ByteBufferAllocator().buffer(
            capacity: 2 + query.buffer.readableBytes + DoTQueryPadding.maximumGrowth(blockSize: paddingBlockSize)
        )
        frame.writeInteger(UInt16(0))
        DoTQueryPadding.pad(query.buffer, view: query.view, blockSize: paddingBlockSize, into: &frame)
        frame.setInteger(UInt16(truncatingIfNeeded: frame.readableBytes - 2), at: frame.readerIndex)
        self.completion = completion
        self.deadline = deadline
        self.frame = frame
        self.query = query
    }

    /// The padded query, without its length prefix.
    var message: ByteBuffer {
        frame.getSlice(at: frame.readerIndex + 2, length: frame.readableBytes - 2)!
    }

    /// Writes the connection's ID into the frame.
    func setConnectionID(_ id: UInt16) {
        frame.setInteger(id, at: frame.readerIndex + 2)
    }

    func succeed(_ reply: ParsedDNSMessage) {
        guard !isDone else { return }
        isDone = true
        completion(.success(reply))
    }

    func fail(_ error: UpstreamError) {
        guard !isDone else { return }
        isDone = true
        completion(.failure(error))
    }
}
