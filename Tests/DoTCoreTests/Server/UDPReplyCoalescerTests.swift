import NIOCore
import NIOEmbedded
import NIOPosix
import Testing

@testable import DoTCore

/// How UDP replies of one flush are grouped into segmented datagrams: on an `EmbeddedChannel`, and
/// once through the kernel over loopback, where the client must receive each reply as its own datagram.
@Suite struct UDPReplyCoalescerTests {
    static let clientA = try! SocketAddress(ipAddress: "127.0.0.1", port: 5301)
    static let clientB = try! SocketAddress(ipAddress: "127.0.0.1", port: 5302)

    /// A reply of `length` octets, every octet `mark`.
    static func reply(_ mark: UInt8, length: Int, to client: SocketAddress = clientA) -> AddressedEnvelope<ByteBuffer> {
        AddressedEnvelope(remoteAddress: client, data: ByteBuffer(repeating: mark, count: length))
    }

    static func outbound(_ channel: EmbeddedChannel) throws -> [AddressedEnvelope<ByteBuffer>] {
        var out: [AddressedEnvelope<ByteBuffer>] = []
        while let envelope = try channel.readOutbound(as: AddressedEnvelope<ByteBuffer>.self) { out.append(envelope) }
        return out
    }

    @Test func repliesToOneClientOfOneLengthLeaveAsOneSegmentedDatagram() throws {
        let channel = EmbeddedChannel(handler: UDPReplyCoalescer())
        for envelope in [
            Self.reply(1, length: 40), Self.reply(2, length: 40, to: Self.clientB), Self.reply(3, length: 50),
            Self.reply(4, length: 40), Self.reply(5, length: 40, to: Self.clientB), Self.reply(6, length: 40),
        ] {
            channel.write(envelope, promise: nil)
        }
        channel.flush()

        let out = try Self.outbound(channel)
        #expect(out.count == 3, "groups in the order of their first reply: A/40, B/40, A/50")
        #expect(out[0].remoteAddress == Self.clientA && out[0].metadata?.segmentSize == 40)
        #expect(
            Array(out[0].data.readableBytesView) == [UInt8](repeating: 1, count: 40) + [UInt8](repeating: 4, count: 40)
                + [UInt8](repeating: 6, count: 40)
        )
        #expect(
            out[1].remoteAddress == Self.clientB && out[1].metadata?.segmentSize == 40
                && out[1].data.readableBytes == 80
        )
        #expect(out[2] == Self.reply(3, length: 50), "a reply alone in its group leaves as it came, without metadata")
        #expect(try channel.finish().isClean)
    }

    @Test func aFlushSendsOnlyWhatWasWrittenSinceTheLastOne() throws {
        let channel = EmbeddedChannel(handler: UDPReplyCoalescer())
        channel.flush()
        #expect(try Self.outbound(channel).isEmpty)
        channel.writeAndFlush(Self.reply(1, length: 30), promise: nil)
        #expect(try Self.outbound(channel) == [Self.reply(1, length: 30)])
        channel.write(Self.reply(2, length: 30), promise: nil)
        channel.write(Self.reply(3, length: 30), promise: nil)
        channel.flush()
        let out = try Self.outbound(channel)
        #expect(out.count == 1 && out[0].data.readableBytes == 60 && out[0].data.getInteger(at: 0, as: UInt8.self) == 2)
        channel.flush()
        #expect(try Self.outbound(channel).isEmpty)
    }

    @Test func writesWithAPromiseMetadataOrTooLongForASegmentPassThrough() throws {
        let channel = EmbeddedChannel(handler: UDPReplyCoalescer())
        let promise = channel.eventLoop.makePromise(of: Void.self)
        var withMetadata = Self.reply(2, length: 40)
        withMetadata.metadata = .init(ecnState: .transportCapableFlag0)
        let long = UDPReplyCoalescer.maximumSegmentSize + 1
        channel.write(Self.reply(1, length: 40), promise: promise)
        channel.write(withMetadata, promise: nil)
        channel.write(Self.reply(3, length: long), promise: nil)
        channel.write(Self.reply(4, length: long), promise: nil)
        channel.write(Self.reply(5, length: 40), promise: nil)
        channel.flush()

        let out = try Self.outbound(channel)
        #expect(out.map { $0.data.readableBytes } == [40, 40, long, long, 40])
        #expect(out.allSatisfy { $0.metadata?.segmentSize == nil })
        #expect(out[1].metadata?.ecnState == .transportCapableFlag0)
        try promise.futureResult.wait()
    }

    @Test func aDatagramCarriesAtMostTheKernelsSegmentLimit() throws {
        let channel = EmbeddedChannel(handler: UDPReplyCoalescer())
        let count = UDPReplyCoalescer.maximumSegments + 6
        for mark in 0..<count { channel.write(Self.reply(UInt8(mark), length: 20), promise: nil) }
        channel.flush()
        let out = try Self.outbound(channel)
        #expect(out.map { $0.data.readableBytes } == [UDPReplyCoalescer.maximumSegments * 20, 6 * 20])
        #expect(out.allSatisfy { $0.metadata?.segmentSize == 20 })
        #expect(
            out[1].data.getInteger(at: 0, as: UInt8.self) == UInt8(UDPReplyCoalescer.maximumSegments),
            "in write order"
        )
    }

    @Test func aReplyIsComparedWithTheLatestGroupsOnly() throws {
        // One reply to A, then replies to `others` other clients, then one more to A: A's second
        // reply joins its first only while A's group is among the latest `groupsSearched`.
        for (others, grouped) in [
            (UDPReplyCoalescer.groupsSearched - 1, true), (UDPReplyCoalescer.groupsSearched, false),
        ] {
            let channel = EmbeddedChannel(handler: UDPReplyCoalescer())
            channel.write(Self.reply(1, length: 40), promise: nil)
            for port in 0..<others {
                channel.write(
                    Self.reply(2, length: 40, to: try SocketAddress(ipAddress: "127.0.0.1", port: 6000 + port)),
                    promise: nil
                )
            }
            channel.write(Self.reply(3, length: 40), promise: nil)
            channel.flush()
            let out = try Self.outbound(channel)
            #expect(out.count == (grouped ? others + 1 : others + 2), "\(others) other clients")
            #expect((out[0].metadata?.segmentSize == 40) == grouped, "\(others) other clients")
            #expect(
                out.filter { $0.remoteAddress == Self.clientA }.map(\.data.readableBytes)
                    == (grouped ? [80] : [40, 40])
            )
        }
    }

    @Test func repliesToTheSamePortOnAnotherAddressAreNotGrouped() throws {
        let channel = EmbeddedChannel(handler: UDPReplyCoalescer())
        let samePort = try SocketAddress(ipAddress: "127.0.0.2", port: Self.clientA.port!)
        channel.write(Self.reply(1, length: 40), promise: nil)
        channel.write(Self.reply(2, length: 40, to: samePort), promise: nil)
        channel.flush()
        #expect(try Self.outbound(channel) == [Self.reply(1, length: 40), Self.reply(2, length: 40, to: samePort)])
    }

    @Test func onlyLoopbackListenersSegmentReplies() throws {
        let supported = System.supportsUDPSegmentationOffload
        for address in ["127.0.0.1", "127.0.0.53", "::1"] {
            #expect(
                UDPSegmentation.isCandidate(try SocketAddress(ipAddress: address, port: 53)) == supported,
                "\(address)"
            )
        }
        for address in ["0.0.0.0", "::", "192.0.2.1", "2001:db8::1"] {
            #expect(!UDPSegmentation.isCandidate(try SocketAddress(ipAddress: address, port: 53)), "\(address)")
        }
    }

    // MARK: Through the kernel

    struct NoReply: Error {}

    @Test(.enabled(if: System.supportsUDPSegmentationOffload))
    func theStartUpCheckSendsASegmentedDatagramOnLoopbackAndFailsWhereItCannotBind() throws {
        try UDPSegmentation.sendProbe(from: try SocketAddress(ipAddress: "127.0.0.1", port: 5053))
        try UDPSegmentation.sendProbe(from: try SocketAddress(ipAddress: "::1", port: 5053))
        #expect(throws: IOError.self, "not an address of this machine") {
            try UDPSegmentation.sendProbe(from: try SocketAddress(ipAddress: "192.0.2.1", port: 5053))
        }
    }

    @Test(.enabled(if: System.supportsUDPSegmentationOffload))
    func theStartUpCheckSendsTwoDatagramsOfItsSegmentSize() async throws {
        // The probe's own datagram goes to its own socket; sent to a listening one instead, it must
        // arrive as two datagrams of 16 octets, not one of 32 (a control message the kernel ignored).
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let done = loop.makePromise(of: [ByteBuffer].self)
        let receiver = try await DatagramBootstrap(group: loop)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(Collector(count: 2, done: done))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        defer { receiver.close(promise: nil) }
        let timer = loop.scheduleTask(in: .seconds(3)) { done.fail(NoReply()) }
        defer { timer.cancel() }
        try UDPSegmentation.sendProbe(
            from: try SocketAddress(ipAddress: "127.0.0.1", port: 0),
            to: receiver.localAddress!
        )
        #expect(try await done.futureResult.get().map(\.readableBytes) == [16, 16])
    }

    /// Echoes every datagram once `count` have arrived, all written before one flush.
    final class EchoAllAtOnce: ChannelInboundHandler {
        typealias InboundIn = AddressedEnvelope<ByteBuffer>
        typealias OutboundOut = AddressedEnvelope<ByteBuffer>
        let count: Int
        var received: [AddressedEnvelope<ByteBuffer>] = []
        init(count: Int) { self.count = count }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            received.append(unwrapInboundIn(data))
            guard received.count == count else { return }
            for envelope in received { context.write(wrapOutboundOut(envelope), promise: nil) }
            context.flush()
        }
    }

    /// Records what leaves the channel: the datagrams after grouping.
    final class SentRecorder: ChannelOutboundHandler {
        typealias OutboundIn = AddressedEnvelope<ByteBuffer>
        var sent: [AddressedEnvelope<ByteBuffer>] = []
        func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
            sent.append(unwrapOutboundIn(data))
            context.write(data, promise: promise)
        }
    }

    /// Completes once `count` datagrams have arrived, with their bytes.
    final class Collector: ChannelInboundHandler {
        typealias InboundIn = AddressedEnvelope<ByteBuffer>
        let count: Int
        let done: EventLoopPromise<[ByteBuffer]>
        var received: [ByteBuffer] = []
        init(count: Int, done: EventLoopPromise<[ByteBuffer]>) {
            self.count = count
            self.done = done
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            received.append(unwrapInboundIn(data).data)
            if received.count == count { done.succeed(received) }
        }
    }

    @Test(.enabled(if: System.supportsUDPSegmentationOffload), arguments: ["127.0.0.1", "::1"])
    func theClientReceivesEachReplyAsItsOwnDatagram(host: String) async throws {
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let count = 8
        let recorder = try await loop.submit { NIOLoopBound(SentRecorder(), eventLoop: loop) }.get()
        let server = try await DatagramBootstrap(group: loop)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers([
                        recorder.value, UDPReplyCoalescer(), EchoAllAtOnce(count: count),
                    ])
                }
            }
            .bind(host: host, port: 0).get()
        defer { server.close(promise: nil) }
        let done = loop.makePromise(of: [ByteBuffer].self)
        let client = try await DatagramBootstrap(group: loop)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(Collector(count: count, done: done))
                }
            }
            .bind(host: host, port: 0).get()
        defer { client.close(promise: nil) }
        let timer = loop.scheduleTask(in: .seconds(3)) { done.fail(NoReply()) }
        defer { timer.cancel() }

        let sent = (0..<count).map { ByteBuffer(repeating: UInt8($0), count: 48) }
        for datagram in sent {
            client.write(AddressedEnvelope(remoteAddress: server.localAddress!, data: datagram), promise: nil)
        }
        client.flush()
        let received = try await done.futureResult.get()

        #expect(received == sent, "one datagram per reply, each as written")
        let leftServer = try await loop.submit { recorder.value.sent }.get()
        #expect(
            leftServer.count == 1 && leftServer.first?.metadata?.segmentSize == 48,
            "the replies left in one segmented datagram"
        )
    }
}
