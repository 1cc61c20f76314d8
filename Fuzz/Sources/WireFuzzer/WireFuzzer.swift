import DoTCore
import NIOCore

/// One libFuzzer input: view → decode → encode → decode, and every stage must agree.
///
/// A crash, a hang, an ASan report or a failed precondition here is a bug.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzWireFormat(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let buffer = ByteBuffer(bytes: UnsafeBufferPointer(start: data, count: size))
    let view = try? DNSMessageView(buffer)
    if let view {
        var copy = buffer
        view.ageTTLs(by: 1, in: &copy)
        view.setID(view.id &+ 1, in: &copy)
        precondition(copy.readableBytes == buffer.readableBytes)
    }
    guard let message = try? DNSMessage(decoding: buffer) else { return 0 }
    if let view {
        precondition(view.header == message.header, "view and decoder disagree on the header")
        precondition(view.questionType == message.questions.first?.type)
        precondition(
            view.ttlOffsets(in: buffer).count == message.answers.count + message.authorities.count
                + message.additionals.count
        )
    }
    for compress in [true, false] {
        guard let encoded = try? message.encoded(compress: compress) else {
            // Only messages that cannot be represented may fail to encode; a decoded one always can.
            preconditionFailure("a decoded message failed to encode")
        }
        guard let again = try? DNSMessage(decoding: encoded) else {
            preconditionFailure("an encoded message failed to decode")
        }
        precondition(again == message, "decode(encode(m)) != m")
        guard let encodedView = try? DNSMessageView(encoded) else {
            preconditionFailure("the view rejected an encoded message")
        }
        precondition(encodedView.header == message.header)
        precondition(encodedView.questionName(in: encoded) == message.questions.first?.name)
    }
    return 0
}
