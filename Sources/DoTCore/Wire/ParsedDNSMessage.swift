import NIOCore

/// A DNS message in wire form together with its index, parsed once and passed along, so that no
/// stage after the first parses it again.
///
/// The proxy's query path hands these from stage to stage and across ``UpstreamTransport``: a client
/// query is parsed when it arrives, an upstream reply when it is matched to its query.
public struct ParsedDNSMessage: Sendable {
    /// The message; its readable bytes are the message.
    public internal(set) var buffer: ByteBuffer
    /// The index of ``buffer``.
    public internal(set) var view: DNSMessageView

    /// Parses `buffer`.
    ///
    /// - Parameter buffer: One DNS message; its readable bytes are the message.
    /// - Throws: ``DNSWireError`` for a message that does not parse.
    public init(_ buffer: ByteBuffer) throws(DNSWireError) {
        self.view = try DNSMessageView(buffer)
        self.buffer = buffer
    }

    /// Pairs a buffer with the view already made of it.
    init(buffer: ByteBuffer, view: DNSMessageView) {
        self.buffer = buffer
        self.view = view
    }

    /// Whether this message is a reply to `query`: a response with its ID and its question (the name
    /// compared without regard to case). What every ``UpstreamTransport`` checks before it delivers a
    /// reply.
    public func answers(_ query: ParsedDNSMessage) -> Bool {
        view.isResponse && view.id == query.view.id && answersQuestion(of: query)
    }

    /// Whether this message is a response to `query`'s question, whatever its ID.
    package func answersQuestion(of query: ParsedDNSMessage) -> Bool {
        view.isResponse && view.questionMatches(query.view, in: buffer, otherBuffer: query.buffer)
    }

    /// Writes a new message ID, in the buffer and the view.
    mutating func setID(_ id: UInt16) {
        view.setID(id, in: &buffer)
        view.id = id
    }

    /// Lowers every TTL above `ceiling` to it (and a TTL with the top bit set to 0).
    mutating func capTTLs(ceiling: UInt32) {
        _ = view.capTTLs(in: &buffer, ceiling: ceiling)
    }
}
