import NIOCore
import NIOExtras

/// The two-octet length framing that DNS uses over TCP and TLS (RFC 1035 §4.2.2, RFC 7766 §8).
///
/// Decoding uses NIOExtras' `LengthFieldBasedFrameDecoder` in a handler, or the same framing with
/// `readLengthPrefixedSlice` inside a handler (`SingleStepDecoder`, as the upstream connection does);
/// both emit each message as a slice and wait without consuming anything while a frame is incomplete.
/// Encoding writes the length and the message into one buffer, so a pipelined burst becomes one TLS
/// record per flush rather than two writes per message.
public enum DNSStreamFraming {
    /// The largest message a frame can carry.
    public static let maximumMessageLength = Int(UInt16.max)

    /// A new decoder handler: bytes in, one `ByteBuffer` per DNS message out.
    public static func makeDecoder() -> ByteToMessageHandler<LengthFieldBasedFrameDecoder> {
        ByteToMessageHandler(makeFrameDecoder())
    }

    /// The bare decoder, for composing into another handler or for tests.
    public static func makeFrameDecoder() -> LengthFieldBasedFrameDecoder {
        LengthFieldBasedFrameDecoder(lengthFieldBitLength: .twoBytes)
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

    /// The same framing as the decoder handler, for a handler that decodes in place with
    /// `NIOSingleStepByteToMessageProcessor` (NIOCore's code is inlinable, so it is specialized there).
    struct SingleStepDecoder: NIOSingleStepByteToMessageDecoder {
        typealias InboundOut = ByteBuffer

        /// The next whole message, or `nil` (nothing consumed) while its frame is incomplete.
        mutating func decode(buffer: inout ByteBuffer) -> ByteBuffer? {
            buffer.readLengthPrefixedSlice(as: UInt16.self)
        }

        mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) -> ByteBuffer? {
            decode(buffer: &buffer)
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
