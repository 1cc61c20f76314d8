import NIOCore
import NIOPosix

/// Resolves upstream host names with plain DNS over UDP to bootstrap servers (for example
/// `9.9.9.9:53`), asking for A and AAAA records and honouring their TTL.
///
/// Servers are tried in order; each gets ``timeout``. Only this lookup goes out unencrypted, and the
/// upstream's certificate is still verified against the name, so a forged answer cannot make the proxy
/// trust another server.
public struct BootstrapHostResolver: UpstreamHostResolver {
    /// The bootstrap DNS servers, tried in order.
    public var servers: [SocketAddress]
    /// How long each server has to answer.
    public var timeout: TimeAmount
    /// The shortest time to keep an answer, so a TTL of 0 does not cause a lookup per query.
    public var minimumTimeToLive: TimeAmount

    /// Creates a resolver.
    ///
    /// - Parameters:
    ///   - servers: Plain DNS servers to ask, in order.
    ///   - timeout: Time per server; 2 s.
    ///   - minimumTimeToLive: The floor on an answer's lifetime; 30 s.
    public init(
        servers: [SocketAddress],
        timeout: TimeAmount = .seconds(2),
        minimumTimeToLive: TimeAmount = .seconds(30)
    ) {
        self.servers = servers
        self.timeout = timeout
        self.minimumTimeToLive = minimumTimeToLive
    }

    public func resolve(_ host: String, on eventLoop: any EventLoop) -> EventLoopFuture<UpstreamHostResolution> {
        let name: DNSName
        do {
            name = try DNSName(parsing: host)
        } catch {
            return eventLoop.makeFailedFuture(
                UpstreamError(.connectionFailed, upstream: host, detail: "not a host name: \(error)")
            )
        }
        return ask(servers[...], name: name, host: host, on: eventLoop, lastError: nil)
    }

    private func ask(
        _ remaining: ArraySlice<SocketAddress>,
        name: DNSName,
        host: String,
        on eventLoop: any EventLoop,
        lastError: (any Error)?
    ) -> EventLoopFuture<UpstreamHostResolution> {
        guard let server = remaining.first else {
            return eventLoop.makeFailedFuture(
                UpstreamError(
                    .connectionFailed,
                    upstream: host,
                    detail: "no bootstrap server resolved it" + (lastError.map { ": \($0)" } ?? " (none configured)")
                )
            )
        }
        let deadline = NIODeadline.now() + timeout
        let v4 = exchange(name: name, type: .a, server: server, deadline: deadline, on: eventLoop)
        let v6 = exchange(name: name, type: .aaaa, server: server, deadline: deadline, on: eventLoop)
        return v4.and(v6).flatMapThrowing { v4, v6 in
            let records = v4 + v6
            guard !records.isEmpty else {
                throw UpstreamError(
                    .connectionFailed,
                    upstream: host,
                    detail: "\(server) has no A or AAAA records for it"
                )
            }
            let ttl = records.map(\.ttl).min() ?? 0
            return UpstreamHostResolution(
                addresses: records.map(\.address),
                timeToLive: max(.seconds(Int64(ttl)), minimumTimeToLive)
            )
        }.flatMapError { error in
            ask(remaining.dropFirst(), name: name, host: host, on: eventLoop, lastError: error)
        }
    }

    /// One query over UDP; returns the address records of the answer.
    private func exchange(
        name: DNSName,
        type: DNSRecordType,
        server: SocketAddress,
        deadline: NIODeadline,
        on eventLoop: any EventLoop
    ) -> EventLoopFuture<[(address: String, ttl: UInt32)]> {
        let id = UInt16.random(in: .min ... .max)
        let query = DNSMessage.query(name: name, type: type, id: id)
        let reply = eventLoop.makePromise(of: ByteBuffer.self)
        let timer = eventLoop.scheduleTask(deadline: deadline) {
            reply.fail(UpstreamError(.timeout, upstream: "\(server)", detail: "no bootstrap reply"))
        }
        let bind: SocketAddress
        do {
            bind = try SocketAddress(ipAddress: server.protocol == .inet6 ? "::" : "0.0.0.0", port: 0)
        } catch {
            return eventLoop.makeFailedFuture(error)
        }
        return DatagramBootstrap(group: eventLoop)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ReplyHandler(server: server, promise: reply))
                }
            }
            .bind(to: bind)
            .flatMap { (channel: any Channel) -> EventLoopFuture<ByteBuffer> in
                reply.futureResult.whenComplete { _ in
                    timer.cancel()
                    channel.close(promise: nil)
                }
                let bytes: ByteBuffer
                do { bytes = try query.encoded() } catch { return eventLoop.makeFailedFuture(error) }
                channel.writeAndFlush(AddressedEnvelope(remoteAddress: server, data: bytes), promise: nil)
                return reply.futureResult
            }
            .flatMapThrowing { (bytes: ByteBuffer) -> [(address: String, ttl: UInt32)] in
                let message = try DNSMessage(decoding: bytes)
                guard message.header.id == id, message.header.isResponse, message.questions == query.questions else {
                    throw UpstreamError(
                        .malformedReply,
                        upstream: "\(server)",
                        detail: "bootstrap reply does not match the query"
                    )
                }
                guard message.header.responseCode == .noError || message.header.responseCode == .nameError else {
                    throw UpstreamError(
                        .malformedReply,
                        upstream: "\(server)",
                        detail: "bootstrap server answered \(message.header.responseCode)"
                    )
                }
                return message.answers.compactMap { record in
                    switch record.rdata {
                    case .a(let address): return (address: "\(address)", ttl: record.ttl)
                    case .aaaa(let address): return (address: "\(address)", ttl: record.ttl)
                    default: return nil
                    }
                }
            }
    }

    private final class ReplyHandler: ChannelInboundHandler, Sendable {
        typealias InboundIn = AddressedEnvelope<ByteBuffer>
        let server: SocketAddress
        let promise: EventLoopPromise<ByteBuffer>
        init(server: SocketAddress, promise: EventLoopPromise<ByteBuffer>) {
            self.server = server
            self.promise = promise
        }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let envelope = unwrapInboundIn(data)
            // Only the server asked may answer; anything else is ignored, not fatal.
            guard envelope.remoteAddress == server else { return }
            promise.succeed(envelope.data)
        }
        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            promise.fail(
                UpstreamError(.connectionFailed, upstream: "\(server)", detail: "bootstrap query failed: \(error)")
            )
        }
    }
}
