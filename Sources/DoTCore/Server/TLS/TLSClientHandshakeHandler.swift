import Logging
import NIOCore

/// Watches the TLS session of one client connection, behind the TLS handler: closes the connection
/// when the handshake is not done within its deadline, counts handshakes (by version, resumed or not),
/// their failures (by ``TLSHandshakeFailureReason``) and broken records after them, and logs each kind
/// of failure at most once per interval.
///
/// The deadline runs on the event loop's clock, so tests drive it with an `EmbeddedEventLoop`.
final class TLSClientHandshakeHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let deadline: TimeAmount
    private let metrics: DNSProxyMetrics
    private let throttle: LogThrottle
    private let logger: Logger
    private var timer: Scheduled<Void>?
    private var settled = false
    private var recordFailed = false

    /// - Parameters:
    ///   - deadline: Time from the connection's start to the handshake's end.
    ///   - metrics: Where handshakes and failures are counted.
    ///   - throttle: Shared by the listener's connections, so that a flood logs once per interval.
    ///   - logger: Receives failures.
    init(deadline: TimeAmount, metrics: DNSProxyMetrics, throttle: LogThrottle, logger: Logger) {
        self.deadline = deadline
        self.metrics = metrics
        self.throttle = throttle
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { start(context: context) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        start(context: context)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        context.fireChannelInactive()
    }

    private func start(context: ChannelHandlerContext) {
        guard timer == nil, !settled else { return }
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        timer = context.eventLoop.assumeIsolated().scheduleTask(in: deadline) { [self] in
            timer = nil
            let context = bound.value
            failed(.timeout, error: nil, context: context)
            context.close(promise: nil)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let completed = event as? TLSHandshakeCompleted, !settled {
            settled = true
            timer?.cancel()
            timer = nil
            metrics.recordClientHandshake(version: completed.protocolName, resumed: completed.resumed)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if !settled {
            failed(TLSHandshakeFailureReason(error), error: error, context: context)
        } else if error is GnuTLSError, !recordFailed {
            recordFailed = true
            metrics.clientTLSRecordFailures.increment()
            if let suppressed = throttle.admit("record", now: context.eventLoop.now) {
                var metadata: Logger.Metadata = ["error": "\(error)"]
                if let remote = context.remoteAddress { metadata["client"] = "\(remote.endpointDescription)" }
                if suppressed > 0 { metadata["unlogged_since_last"] = .stringConvertible(suppressed) }
                logger.notice("client TLS connection closed on a broken record", metadata: metadata)
            }
        }
        // The TLS handler closes the connection after any error it reports.
        context.close(promise: nil)
    }

    private func failed(_ reason: TLSHandshakeFailureReason, error: (any Error)?, context: ChannelHandlerContext) {
        guard !settled else { return }
        settled = true
        metrics.recordClientHandshakeFailure(reason)
        guard let suppressed = throttle.admit("handshake \(reason.rawValue)", now: context.eventLoop.now) else {
            return
        }
        var metadata: Logger.Metadata = ["reason": "\(reason.rawValue)"]
        if let remote = context.remoteAddress { metadata["client"] = "\(remote.endpointDescription)" }
        if let error { metadata["error"] = "\(Self.describe(error))" }
        if suppressed > 0 { metadata["unlogged_since_last"] = .stringConvertible(suppressed) }
        logger.notice("client TLS handshake failed", metadata: metadata)
    }

    private static func describe(_ error: any Error) -> String {
        if let failure = error as? TLSHandshakeFailure {
            return failure.error.map { "\($0)" } ?? (failure.closedEarly ? "closed during the handshake" : "\(failure)")
        }
        return "\(error)"
    }
}

@available(*, unavailable)
extension TLSClientHandshakeHandler: Sendable {}
