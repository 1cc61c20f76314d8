import DoTCore
import NIOCore
import NIOHTTP1
import Prometheus

/// Answers one HTTP request at a time on a connection; keeps the connection open when the client
/// asks to, but closes it when no whole request arrives within ``requestTimeout`` of the connection
/// opening or of the last response, so that silent or slow clients cannot hold the listener's few
/// connections.
final class MetricsHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    /// How long a connection may go without a whole request.
    static let requestTimeout = TimeAmount.seconds(5)

    private let registry: PrometheusCollectorRegistry
    private let isReady: @Sendable () -> Bool
    private var request: HTTPRequestHead?
    private var timeout: Scheduled<Void>?

    init(registry: PrometheusCollectorRegistry, isReady: @escaping @Sendable () -> Bool) {
        self.registry = registry
        self.isReady = isReady
    }

    func handlerAdded(context: ChannelHandlerContext) {
        armTimeout(context: context)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timeout?.cancel()
        timeout = nil
    }

    private func armTimeout(context: ChannelHandlerContext) {
        timeout?.cancel()
        let channel = context.channel
        timeout = context.eventLoop.scheduleTask(in: Self.requestTimeout) { channel.close(promise: nil) }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            request = head
        case .body:
            break
        case .end:
            guard let head = request else { return }
            request = nil
            respond(to: head, context: context)
            armTimeout(context: context)
        }
    }

    private func respond(to head: HTTPRequestHead, context: ChannelHandlerContext) {
        let (status, contentType, body) = answer(head)
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: contentType)
        headers.add(name: "Content-Length", value: "\(body.readableBytes)")
        if !head.isKeepAlive { headers.add(name: "Connection", value: "close") }
        context.write(
            wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))),
            promise: nil
        )
        if head.method != .HEAD { context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil) }
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !head.isKeepAlive {
            let channel = context.channel
            done.whenComplete { _ in channel.close(promise: nil) }
        }
    }

    private func answer(_ head: HTTPRequestHead) -> (HTTPResponseStatus, String, ByteBuffer) {
        let text = "text/plain; charset=utf-8"
        guard head.method == .GET || head.method == .HEAD else {
            return (.methodNotAllowed, text, ByteBuffer(string: "GET only\n"))
        }
        let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
        switch path {
        case "/metrics":
            return (.ok, "text/plain; version=0.0.4; charset=utf-8", Self.withHelp(registry.emitToString()))
        case "/health":
            return (.ok, text, ByteBuffer(string: "ok\n"))
        case "/ready":
            return isReady()
                ? (.ok, text, ByteBuffer(string: "ready\n"))
                : (.serviceUnavailable, text, ByteBuffer(string: "no usable upstream\n"))
        default:
            return (.notFound, text, ByteBuffer(string: "not found; try /metrics, /health or /ready\n"))
        }
    }

    /// The exposition with a `# HELP` line before each `# TYPE` line whose metric has help text
    /// (swift-metrics carries no help, so the text comes from ``DNSProxyMetrics/help``).
    static func withHelp(_ exposition: String) -> ByteBuffer {
        var out = ByteBuffer()
        out.reserveCapacity(exposition.utf8.count + 4096)
        for line in exposition.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("# TYPE "), let name = line.dropFirst(7).split(separator: " ").first,
                let help = DNSProxyMetrics.help[String(name)]
            {
                out.writeString("# HELP \(name) \(help)\n")
            }
            out.writeString(String(line))
            out.writeString("\n")
        }
        // The split leaves one empty piece after the final newline.
        if exposition.hasSuffix("\n") { out.moveWriterIndex(to: out.writerIndex - 1) }
        return out
    }
}
