import NIOCore

/// Sends the UDP replies of one flush that go to the same client and have the same length as one
/// segmented datagram (Linux UDP generic segmentation offload, `UDP_SEGMENT`).
///
/// The kernel takes such a datagram through its sending path once and cuts it into the separate
/// datagrams only on delivery, so the client receives exactly what it would have without this
/// handler. On loopback, most of a reply's cost is that sending path, and segments of two or four cut
/// it by a third or more (Docs/performance.md, "Replies batched per tick and per datagram"). Replies
/// group when a client has
/// several queries in flight from one socket, as a load generator or a forwarding cache does; a stub
/// that sends each query from a new port gets its replies exactly as before.
///
/// Writes are held until the next flush (when SwiftNIO would send them anyway), then grouped by
/// address and length in the order they came. A write with a promise or metadata of its own, or
/// longer than ``maximumSegmentSize``, passes through as it is.
///
/// Use it only where the kernel is known to accept segmented sends to every client of the channel:
/// the server adds it to listeners on loopback addresses, once a segmented datagram sent there at
/// start-up went out (see `DNSProxyServer`). Elsewhere an IPsec route, or on some kernels a device
/// without checksum offload, fails the send with `EIO`, and SwiftNIO closes a datagram channel on
/// that error.
final class UDPReplyCoalescer: ChannelOutboundHandler {
    typealias OutboundIn = AddressedEnvelope<ByteBuffer>
    typealias OutboundOut = AddressedEnvelope<ByteBuffer>

    /// The longest reply sent as a segment: a segment and its headers must fit the route's MTU, and
    /// 512 octets (the classic DNS UDP limit) fit any IPv4 or IPv6 link.
    static let maximumSegmentSize = 512
    /// The most segments in one datagram; the kernel's limit (`UDP_MAX_SEGMENTS`) is 64 or more.
    static let maximumSegments = 64
    /// How many of the latest groups a reply is compared with. Bounds the work per reply when one
    /// flush holds replies to many clients, each with one or two (stubs that send every query from a
    /// new port); a reply past the bound starts a group of its own.
    static let groupsSearched = 64

    /// One group of replies to the same address with the same length, as indices into `held`.
    private struct Group {
        var first: Int
        var last: Int
        var length: Int
        /// The address's port: compared before the whole address, which costs more.
        var port: Int?
        var count: Int
    }

    /// Replies written since the last flush, in order.
    private var held: [AddressedEnvelope<ByteBuffer>] = []
    /// For each held reply, the index of the next one in its group, or -1.
    private var nextInGroup: [Int] = []
    private var groups: [Group] = []

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let envelope = unwrapOutboundIn(data)
        guard promise == nil, envelope.metadata == nil, envelope.data.readableBytes <= Self.maximumSegmentSize else {
            context.write(data, promise: promise)
            return
        }
        held.append(envelope)
    }

    func flush(context: ChannelHandlerContext) {
        if held.count == 1 {
            context.write(wrapOutboundOut(held[0]), promise: nil)
        } else if held.count > 1 {
            writeGrouped(context: context)
        }
        held.removeAll(keepingCapacity: true)
        context.flush()
    }

    private func writeGrouped(context: ChannelHandlerContext) {
        groups.removeAll(keepingCapacity: true)
        nextInGroup.removeAll(keepingCapacity: true)
        for index in held.indices {
            nextInGroup.append(-1)
            let length = held[index].data.readableBytes
            let port = held[index].remoteAddress.port
            // Length and port first: they are cheap and rule out most groups.
            if let group = groups[groups.indices.suffix(Self.groupsSearched)].firstIndex(where: {
                $0.length == length && $0.port == port && $0.count < Self.maximumSegments
                    && held[$0.first].remoteAddress == held[index].remoteAddress
            }) {
                nextInGroup[groups[group].last] = index
                groups[group].last = index
                groups[group].count += 1
            } else {
                groups.append(Group(first: index, last: index, length: length, port: port, count: 1))
            }
        }
        for group in groups {
            guard group.count > 1 else {
                context.write(wrapOutboundOut(held[group.first]), promise: nil)
                continue
            }
            var datagram = context.channel.allocator.buffer(capacity: group.length * group.count)
            var index = group.first
            while index >= 0 {
                datagram.writeImmutableBuffer(held[index].data)
                index = nextInGroup[index]
            }
            let metadata = AddressedEnvelope<ByteBuffer>.Metadata(
                ecnState: .transportNotCapable,
                packetInfo: nil,
                segmentSize: group.length
            )
            context.write(
                wrapOutboundOut(
                    AddressedEnvelope(
                        remoteAddress: held[group.first].remoteAddress,
                        data: datagram,
                        metadata: metadata
                    )
                ),
                promise: nil
            )
        }
    }
}

@available(*, unavailable)
extension UDPReplyCoalescer: Sendable {}
