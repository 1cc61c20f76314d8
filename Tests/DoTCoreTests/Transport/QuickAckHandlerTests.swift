@testable import DoTCore
import NIOCore
import NIOEmbedded
import Testing

@Suite struct QuickAckHandlerTests {
    @Test func passesDataThroughAndRemovesItselfAfterItsReads() throws {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(QuickAckHandler(reads: 3))
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 853)).wait()
        for index in 0..<5 {
            try channel.writeInbound(ByteBuffer(bytes: [UInt8(index)]))
            #expect(try channel.readInbound(as: ByteBuffer.self) == ByteBuffer(bytes: [UInt8(index)]))
        }
        #expect(throws: (any Error).self) { try channel.pipeline.syncOperations.handler(type: QuickAckHandler.self) }
        _ = try channel.finish()
    }
}
