import NIOCore

/// The two-octet length framing that DNS uses over TCP and TLS (RFC 1035 §4.2.2, RFC 7766 §8).
///
/// One decoder (``FrameDecoder``) cuts the stream into messages, either as a handler of its own
/// (``makeDecoder()``) or run in place by a handler with `NIOSingleStepByteToMessageProcessor`, as the
/// upstream connection and the TCP listener do; it emits each message as a slice and consumes nothing
/// while a frame is incomplete. Encoding (``makeEncoder()`` or ``writeFrame(_:into:)``) writes the
/// length and the message into one buffer, so a pipelined burst becomes one TLS record per flush
/// rather than two writes per message.
///
/// The handler forms are the simplest to compose, but NIOCore's generic handler classes run
/// unspecialized outside it: on a hot path, run the decoder in place and write frames directly.
public enum DNSStreamFraming {
    /// The largest message a frame can carry.
    public static let maximumMessageLength = Int(UInt16.max)

    /// A new decoder handler: bytes in, one `ByteBuffer` per DNS message out.
    public static func makeDecoder() -> ByteToMessageHandler<FrameDecoder> {
        ByteToMessageHandler(FrameDecoder())
    }

    /// The bare decoder, for composing into another handler or for tests.
    public static func makeFrameDecoder() -> FrameDecoder {
        FrameDecoder()
    }

    /// A new encoder handler: one `ByteBuffer` per DNS message in, framed bytes out.
    public static func makeEncoder() -> MessageToByteHandler<Encoder> {
        MessageToByteHandler(Encoder())
    }

    /// Writes `message` to `buffer` behind its two-octet length.
    ///
    /// - Throws: ``DNSWireError/Code/messageTooLarge`` when the message exceeds 65,535 octets.
    public static func writeFrame(_ message: ByteBuffer, into buffer: inout ByteBuffer) throws(DNSWireError) {
        guard message.readableBytes <= maximumMessageLength else {
            throw DNSWireError(.messageTooLarge, detail: "\(message.readableBytes) octets cannot be framed")
        }
        buffer.writeInteger(UInt16(message.readableBytes))
        buffer.writeImmutableBuffer(message)
    }

    /// Cuts a byte stream into DNS messages: each frame's two-octet length, then that many octets.
    ///
    /// A whole frame comes out as a slice of the input; an incomplete one stays unconsumed until the
    /// rest arrives. NIOCore's processing code is inlinable, so a handler that runs this decoder in
    /// place gets it specialized, with no generic lookups per read.
    public struct FrameDecoder: NIOSingleStepByteToMessageDecoder, Sendable {
        public typealias InboundOut = ByteBuffer

        /// Creates a decoder.
        public init() {}

        /// The next whole message, or `nil` (nothing consumed) while its frame is incomplete.
        public mutating func decode(buffer: inout ByteBuffer) -> ByteBuffer? {
            buffer.readLengthPrefixedSlice(as: UInt16.self)
        }

        /// As ``decode(buffer:)``, at the end of the stream.
        ///
        /// - Throws: ``DNSWireError/Code/unexpectedEnd`` when only part of a frame is left.
        public mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws(DNSWireError) -> ByteBuffer? {
            if let message = decode(buffer: &buffer) { return message }
            guard buffer.readableBytes == 0 else {
                throw DNSWireError(
                    .unexpectedEnd,
                    detail: "the stream ended inside a frame, \(buffer.readableBytes) octets left"
                )
            }
            return nil
        }
    }

    /// Frames each outbound DNS message with its two-octet length.
    public struct Encoder: MessageToByteEncoder, Sendable {
        public typealias OutboundIn = ByteBuffer

        /// Creates an encoder.
        public init() {}

        public func encode(data: ByteBuffer, out: inout ByteBuffer) throws {
            try DNSStreamFraming.writeFrame(data, into: &out)
        }
    }
}
