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

    /// The decoder run in place, as `DoTConnection` runs it: the same messages whatever the read sizes,
    /// and an incomplete frame kept, unconsumed, until the rest arrives.
    @Test func decoderRunInPlaceHandlesEveryChunkSize() throws {
        let messages = try ["a", "big-txt", "nxdomain"].map(Fixtures.response) + [ByteBuffer()]
        var framed = ByteBuffer()
        for message in messages { try DNSStreamFraming.writeFrame(message, into: &framed) }
        for chunkSize in [1, 2, 3, 7, 64, framed.readableBytes] {
            let processor = NIOSingleStepByteToMessageProcessor(DNSStreamFraming.makeFrameDecoder())
            var input = framed
            var decoded: [ByteBuffer] = []
            while let chunk = input.readSlice(length: min(chunkSize, input.readableBytes)), chunk.readableBytes > 0 {
                try processor.process(buffer: chunk) { decoded.append($0) }
            }
            #expect(decoded == messages, "chunks of \(chunkSize)")
        }
        let processor = NIOSingleStepByteToMessageProcessor(DNSStreamFraming.makeFrameDecoder())
        var decoded: [ByteBuffer] = []
        try processor.process(buffer: ByteBuffer(bytes: [0, 5, 1, 2])) { decoded.append($0) }
        #expect(decoded.isEmpty)
        try processor.process(buffer: ByteBuffer(bytes: [3, 4, 5, 0])) { decoded.append($0) }
        #expect(decoded == [ByteBuffer(bytes: [1, 2, 3, 4, 5])])
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
        #expect(throws: DNSWireError.self) { try channel.finish() }  // A left-over partial frame is an error at close.
    }
}
