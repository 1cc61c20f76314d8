import DoTCore
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// An in-process DNS-over-TLS server on 127.0.0.1, backed by GnuTLS, whose answers a test scripts.
///
/// Each query is passed to a ``Responder``, which decides what happens: a reply (possibly delayed,
/// possibly with another ID or question), silence, a closed connection, or garbage bytes. The server
/// counts connections, completed handshakes and resumed handshakes.
public final class TestDoTServer: Sendable {
    /// What the server does with one query.
    public enum Response: Sendable {
        /// Send this reply.
        case reply(DNSMessage)
        /// Send this reply after a delay, letting later queries overtake it.
        case delayedReply(DNSMessage, TimeAmount)
        /// Send these exact bytes as one frame.
        case rawFrame(ByteBuffer)
        /// Never answer.
        case silence
        /// Close the TCP connection at once, without close_notify (a reset, as the client sees it).
        case closeConnection
    }

    /// Decides the response to one query.
    public typealias Responder = @Sendable (DNSMessage) -> Response

    /// How the server treats a new TCP connection.
    public enum Mode: Sendable {
        /// Speak TLS with this certificate.
        case tls(TestCertificates.Identity)
        /// Accept the connection and never send a byte: a half-open upstream.
        case silent
        /// Answer anything with bytes that are not TLS.
        case garbage
    }

    /// The port the server listens on.
    public let port: Int
    private let channel: any Channel
    private let counters: NIOLockedValueBox<(connections: Int, handshakes: Int, resumed: Int, queries: Int)>
    private let children: NIOLockedValueBox<[ObjectIdentifier: any Channel]>

    /// Connections accepted so far.
    public var connectionCount: Int { counters.withLockedValue { $0.connections } }
    /// TLS handshakes completed so far.
    public var handshakeCount: Int { counters.withLockedValue { $0.handshakes } }
    /// Handshakes that resumed an earlier session.
    public var resumedHandshakeCount: Int { counters.withLockedValue { $0.resumed } }
    /// Queries received so far.
    public var queryCount: Int { counters.withLockedValue { $0.queries } }

    /// Starts a server on 127.0.0.1 on a free port.
    ///
    /// - Parameters:
    ///   - mode: TLS with a certificate (the valid test certificate by default), silence or garbage.
    ///   - group: The event loops to run on.
    ///   - responder: What to do with each query; ``answer(_:)`` by default.
    public static func start(
        mode: Mode = .tls(TestCertificates.server),
        group: any EventLoopGroup,
        responder: @escaping Responder = { .reply(TestDoTServer.answer($0)) }
    ) async throws -> TestDoTServer {
        let counters = NIOLockedValueBox((connections: 0, handshakes: 0, resumed: 0, queries: 0))
        let children = NIOLockedValueBox([ObjectIdentifier: any Channel]())
        let context: TLSServerContext?
        if case .tls(let identity) = mode {
            context = try TLSServerContext(certificateFile: identity.certificateFile, keyFile: identity.keyFile)
        } else {
            context = nil
        }
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                counters.withLockedValue { $0.connections += 1 }
                children.withLockedValue { $0[ObjectIdentifier(channel)] = channel }
                channel.closeFuture.whenComplete { _ in
                    children.withLockedValue { _ = $0.removeValue(forKey: ObjectIdentifier(channel)) }
                }
                return channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    switch mode {
                    case .silent:
                        break
                    case .garbage:
                        try sync.addHandler(GarbageHandler())
                    case .tls:
                        try sync.addHandler(GnuTLSHandler(server: context!))
                        try sync.addHandler(DNSStreamFraming.makeDecoder())
                        try sync.addHandler(DNSStreamFraming.makeEncoder())
                        try sync.addHandler(QueryHandler(responder: responder, counters: counters))
                    }
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        return TestDoTServer(channel: channel, counters: counters, children: children)
    }

    private init(
        channel: any Channel,
        counters: NIOLockedValueBox<(connections: Int, handshakes: Int, resumed: Int, queries: Int)>,
        children: NIOLockedValueBox<[ObjectIdentifier: any Channel]>
    ) {
        self.channel = channel
        self.children = children
        self.port = channel.localAddress?.port ?? 0
        self.counters = counters
    }

    /// Stops listening and resets every open connection, as a crashed upstream would.
    public func stop() async throws {
        try await channel.close()
        for child in children.withLockedValue({ Array($0.values) }) { try? await child.close() }
    }

    /// The standard scripted answer: the query's ID and question, an authoritative A record
    /// 192.0.2.1 with TTL 300 for A questions, and NODATA otherwise.
    public static func answer(_ query: DNSMessage) -> DNSMessage {
        var reply = DNSMessage(header: query.header, questions: query.questions)
        reply.header.isResponse = true
        reply.header.isAuthoritativeAnswer = true
        reply.header.recursionAvailable = true
        if let question = query.questions.first, question.type == .a {
            reply.answers = [DNSResourceRecord(name: question.name, ttl: 300, rdata: .a(IPv4Address(192, 0, 2, 1)))]
        }
        if query.edns != nil { reply.edns = EDNSRecord(udpPayloadSize: 1232) }
        return reply
    }

    private final class QueryHandler: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        let responder: Responder
        let counters: NIOLockedValueBox<(connections: Int, handshakes: Int, resumed: Int, queries: Int)>

        init(
            responder: @escaping Responder,
            counters: NIOLockedValueBox<(connections: Int, handshakes: Int, resumed: Int, queries: Int)>
        ) {
            self.responder = responder
            self.counters = counters
        }

        func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
            if let completed = event as? TLSHandshakeCompleted {
                counters.withLockedValue {
                    $0.handshakes += 1
                    if completed.resumed { $0.resumed += 1 }
                }
            }
            context.fireUserInboundEventTriggered(event)
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            counters.withLockedValue { $0.queries += 1 }
            guard let query = try? DNSMessage(decoding: unwrapInboundIn(data)) else {
                context.close(promise: nil)
                return
            }
            switch responder(query) {
            case .reply(let reply):
                if let bytes = try? reply.encoded() { context.writeAndFlush(wrapOutboundOut(bytes), promise: nil) }
            case .delayedReply(let reply, let delay):
                let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
                context.eventLoop.scheduleTask(in: delay) {
                    if let bytes = try? reply.encoded() { bound.value.writeAndFlush(NIOAny(bytes), promise: nil) }
                }
            case .rawFrame(let bytes):
                context.writeAndFlush(wrapOutboundOut(bytes), promise: nil)
            case .silence:
                break
            case .closeConnection:
                // Skip close_notify: close the socket under the TLS layer, as a crash or reset would.
                context.channel.close(mode: .all, promise: nil)
            }
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            context.close(promise: nil)
        }
    }

    private final class GarbageHandler: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let garbage = ByteBuffer(string: "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            context.writeAndFlush(wrapOutboundOut(garbage), promise: nil)
        }
    }
}

extension TestDoTServer {
    /// A strict DoT transport to this server: it trusts only the test CA and expects `dns.test`.
    ///
    /// - Parameters:
    ///   - pins: SPKI pins to require, in base64.
    ///   - metrics: Where the transport reports connections and handshakes.
    ///   - configure: Changes to the transport's configuration.
    public func makeTransport(
        pins: [String] = [],
        metrics: DNSProxyMetrics = DNSProxyMetrics(),
        configure: (inout DoTUpstreamTransport.Configuration) -> Void = { _ in }
    ) throws -> DoTUpstreamTransport {
        var configuration = DoTUpstreamTransport.Configuration(
            upstream: UpstreamAddress(host: "127.0.0.1", port: port, authenticationName: TestCertificates.serverName)
        )
        configure(&configuration)
        return DoTUpstreamTransport(
            configuration: configuration,
            tlsContext: try TLSClientContext(configuration: TestCertificates.clientConfiguration(pins: pins)),
            metrics: metrics
        )
    }
}
