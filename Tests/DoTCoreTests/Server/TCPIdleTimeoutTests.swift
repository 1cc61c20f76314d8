import NIOCore
import NIOEmbedded
import Testing

@testable import DoTCore

/// A client TCP connection closes after the idle timeout, but never while a query waits for the
/// upstream (RFC 7766 §6.2.3). The server's own pipeline, on an `EmbeddedChannel` and its clock.
@Suite struct TCPIdleTimeoutTests {
    static let client = try! SocketAddress(ipAddress: "192.0.2.7", port: 5300)

    func connect(_ handler: any DNSQueryHandler, idleTimeout: TimeAmount) throws -> EmbeddedChannel {
        let channel = EmbeddedChannel()
        _ = try DNSProxyServer.addClientTCPHandlers(
            to: channel.pipeline.syncOperations,
            handler: handler,
            configuration: .init(tcpIdleTimeout: idleTimeout)
        )
        try channel.connect(to: Self.client).wait()
        return channel
    }

    @Test func anIdleConnectionClosesAtTheTimeoutAndNotBefore() throws {
        let channel = try connect(ReplyBatchingTests.HeldQueryHandler(), idleTimeout: .seconds(10))
        channel.embeddedEventLoop.advanceTime(by: .seconds(9))
        #expect(channel.isActive)
        channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        #expect(!channel.isActive)
    }

    @Test func aQueryWaitingForTheUpstreamKeepsTheConnectionOpen() throws {
        let queries = ReplyBatchingTests.HeldQueryHandler()
        let channel = try connect(queries, idleTimeout: .seconds(10))
        try channel.writeInbound(try TCPQueryFramingTests.framed(id: 300))
        #expect(queries.held.withLockedValue { $0.count } == 1)
        channel.embeddedEventLoop.advanceTime(by: .seconds(25))
        #expect(channel.isActive, "a slow upstream answer must still reach the client")

        queries.answer()
        channel.embeddedEventLoop.run()
        var reply = try #require(try channel.readOutbound(as: ByteBuffer.self))
        #expect(reply.readInteger(as: UInt16.self) == UInt16(reply.readableBytes))
        #expect(reply.getInteger(at: reply.readerIndex, as: UInt16.self) == 300)
        // The reply was traffic; the connection closes one whole timeout after it.
        channel.embeddedEventLoop.advanceTime(by: .seconds(9))
        #expect(channel.isActive)
        channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        #expect(!channel.isActive)
    }
}
