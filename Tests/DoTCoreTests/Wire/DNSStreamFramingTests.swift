import DoTCore
import NIOCore
import NIOEmbedded
import NIOTestUtils
import Testing

@Suite struct DNSStreamFramingTests {
    @Test func decoderHandlesDripFeedAndBatches() throws {
        let messages = try ["a", "big-txt", "nxdomain"].map(Fixtures.response)
        var framed = ByteBuffer()
        for message in messages { try DNSStreamFraming.writeFrame(message, into: &framed) }
        let unframed = ByteBuffer()
        // The verifier feeds the input whole, byte by byte, and in random chunks, and checks the output
        // and that nothing is left over.
        try ByteToMessageDecoderVerifier.verifyDecoder(
            inputOutputPairs: [(framed, messages), (ByteBuffer(bytes: [0, 0]), [unframed])],
            decoderFactory: { DNSStreamFraming.makeFrameDecoder() }
        )
    }

    @Test func encoderWritesLengthAndMessageInOneBuffer() throws {
        let channel = EmbeddedChannel(handler: DNSStreamFraming.makeEncoder())
        let message = try Fixtures.query("a")
        try channel.writeOutbound(message)
        let out = try #require(try channel.readOutbound(as: ByteBuffer.self))
        #expect(out.getInteger(at: out.readerIndex, as: UInt16.self) == UInt16(message.readableBytes))
        #expect(out.getSlice(at: out.readerIndex + 2, length: message.readableBytes) == message)
        #expect(try channel.readOutbound(as: ByteBuffer.self) == nil)
        #expect(try channel.finish().isClean)
    }

    @Test func refusesMessagesThatCannotBeFramed() {
        var out = ByteBuffer()
        #expect(throws: DNSWireError.self) {
            try DNSStreamFraming.writeFrame(ByteBuffer(repeating: 0, count: 65536), into: &out)
        }
        #expect(out.readableBytes == 0)
    }

    @Test func incompleteFramesWaitWithoutConsuming() throws {
        let channel = EmbeddedChannel(handler: DNSStreamFraming.makeDecoder())
        try channel.writeInbound(ByteBuffer(bytes: [0, 5, 1, 2]))
        #expect(try channel.readInbound(as: ByteBuffer.self) == nil)
        try channel.writeInbound(ByteBuffer(bytes: [3, 4, 5, 0]))
        #expect(try channel.readInbound(as: ByteBuffer.self) == ByteBuffer(bytes: [1, 2, 3, 4, 5]))
        #expect(throws: (any Error).self) { try channel.finish() }  // A left-over partial frame is an error at close.
    }
}
