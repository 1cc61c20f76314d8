import NIOCore
import NIOEmbedded
import Testing

@testable import DoTRedisCache

/// RESP through hiredis, and the pipelined connection handler, in memory.
@Suite struct RedisProtocolTests {
    @Test func commandsAreFormattedBinarySafe() {
        var bytes = ByteBuffer()
        RESPReader.format([Array("SET".utf8), [0, 13, 10], Array("PX".utf8)], into: &bytes)
        #expect(
            Array(bytes.readableBytesView) == Array("*3\r\n$3\r\nSET\r\n$3\r\n".utf8) + [0, 13, 10]
                + Array("\r\n$2\r\nPX\r\n".utf8)
        )
    }

    @Test func repliesAreReadInAnyPieces() throws {
        let wire = Array("+OK\r\n-ERR wrong\r\n:-42\r\n$3\r\na\r\n\r\n$-1\r\n*2\r\n:1\r\n*-1\r\n".utf8)
        let expected: [RESPValue] = [
            .simpleString("OK"), .error("ERR wrong"), .integer(-42),
            .bulkString(ByteBuffer(bytes: Array("a\r\n".utf8))),
            .null, .array([.integer(1), .null]),
        ]
        for piece in [1, 2, 7, wire.count] {
            let reader = RESPReader()
            var values: [RESPValue] = []
            var start = 0
            while start < wire.count {
                try reader.feed(ByteBuffer(bytes: wire[start..<min(start + piece, wire.count)]))
                while let value = try reader.next() { values.append(value) }
                start += piece
            }
            #expect(values == expected, "pieces of \(piece)")
            #expect(reader.buffered == 0)
        }
    }

    @Test func garbageIsAProtocolError() throws {
        let reader = RESPReader()
        try reader.feed(ByteBuffer(string: "?what\r\n"))
        #expect(throws: RedisError.self) { try reader.next() }
    }

    @Test func anOversizedReplyIsRefusedBeforeItIsWhole() throws {
        let reader = RESPReader()
        try reader.feed(ByteBuffer(string: "$100000000\r\n"))
        #expect(throws: RedisError.self) {
            try reader.feed(ByteBuffer(repeating: 0x41, count: RESPReader.maximumBuffered + 1))
        }
    }

    func connectedChannel() throws -> EmbeddedChannel {
        let channel = EmbeddedChannel(handler: RedisConnectionHandler())
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 6379)).wait()
        return channel
    }

    func request(_ channel: EmbeddedChannel, replies: Int) throws -> EventLoopFuture<[RESPValue]> {
        let promise = channel.eventLoop.makePromise(of: [RESPValue].self)
        try channel.writeOutbound(
            RedisConnectionHandler.Request(bytes: ByteBuffer(string: "x"), replyCount: replies) {
                promise.completeWith($0.mapError { $0 })
            }
        )
        return promise.futureResult
    }

    @Test func pipelinedRequestsAreAnsweredInOrderEachWithItsReplies() throws {
        let channel = try connectedChannel()
        let first = try request(channel, replies: 2)
        let second = try request(channel, replies: 1)
        #expect(try channel.readOutbound(as: ByteBuffer.self) == ByteBuffer(string: "x"))
        try channel.writeInbound(ByteBuffer(string: "$1\r\nv\r\n:12"))
        try channel.writeInbound(ByteBuffer(string: "34\r\n+PONG\r\n"))
        #expect(try first.wait() == [.bulkString(ByteBuffer(string: "v")), .integer(1234)])
        #expect(try second.wait() == [.simpleString("PONG")])
        #expect(channel.isActive)
    }

    @Test func aReplyNobodyAskedForClosesTheConnectionAndACloseFailsWhatWaits() throws {
        let channel = try connectedChannel()
        _ = try? channel.writeInbound(ByteBuffer(string: "+OK\r\n"))
        #expect(!channel.isActive)

        let other = try connectedChannel()
        let waiting = try request(other, replies: 1)
        _ = try other.finish()
        #expect(throws: RedisError(.connectionClosed)) { try waiting.wait() }
    }
}
