import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import Prometheus
import ServiceLifecycle

/// A small HTTP/1.1 listener for operators: `GET /metrics` (Prometheus text format), `GET /health`
/// (200 while the process runs) and `GET /ready` (200 while at least one upstream is usable, else
/// 503). Anything else gets 404, or 405 for a method other than GET and HEAD. Runs until graceful
/// shutdown. It keeps at most ``DescriptorBudget/metricsConnections`` connections open (more are
/// closed at once), each for at most ``MetricsHTTPHandler/requestTimeout`` without a request.
final class MetricsHTTPServer: Service, Sendable {
    private let address: SocketAddress
    private let registry: PrometheusCollectorRegistry
    private let isReady: @Sendable () -> Bool
    private let group: any EventLoopGroup
    private let logger: Logger
    private let listening = NIOLockedValueBox(Listening.waiting([]))

    private enum Listening {
        case waiting([CheckedContinuation<SocketAddress, any Error>])
        case settled(Result<SocketAddress, any Error>)
    }

    /// - Parameters:
    ///   - address: Where to listen.
    ///   - registry: The registry whose metrics `/metrics` emits.
    ///   - group: The event loops to serve on.
    ///   - logger: Receives start-up and bind errors.
    ///   - isReady: Whether `/ready` answers 200.
    init(
        address: SocketAddress,
        registry: PrometheusCollectorRegistry,
        group: any EventLoopGroup,
        logger: Logger,
        isReady: @escaping @Sendable () -> Bool
    ) {
        self.address = address
        self.registry = registry
        self.group = group
        self.logger = logger
        self.isReady = isReady
    }

    /// The address it listens on, once it does (with the real port when 0 was asked for).
    func listeningAddress() async throws -> SocketAddress {
        try await withCheckedThrowingContinuation { continuation in
            listening.withLockedValue { state in
                switch state {
                case .waiting(let waiters): state = .waiting(waiters + [continuation])
                case .settled(let result): continuation.resume(with: result)
                }
            }
        }
    }

    private func settle(_ result: Result<SocketAddress, any Error>) {
        let waiters = listening.withLockedValue { state -> [CheckedContinuation<SocketAddress, any Error>] in
            guard case .waiting(let waiters) = state else { return [] }
            state = .settled(result)
            return waiters
        }
        for waiter in waiters { waiter.resume(with: result) }
    }

    func run() async throws {
        let registry = self.registry
        let isReady = self.isReady
        let open = NIOLockedValueBox(0)
        let channel: any Channel
        do {
            channel = try await ServerBootstrap(group: group)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                // Back off accepting for a second when out of descriptors, rather than spin.
                .serverChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(AcceptBackoffHandler())
                    }
                }
                .childChannelInitializer { channel in
                    let admitted = open.withLockedValue { count in
                        guard count < DescriptorBudget.metricsConnections else { return false }
                        count += 1
                        return true
                    }
                    guard admitted else { return channel.close() }
                    channel.closeFuture.whenComplete { _ in open.withLockedValue { $0 -= 1 } }
                    return channel.pipeline.configureHTTPServerPipeline(withErrorHandling: true).flatMapThrowing {
                        try channel.pipeline.syncOperations.addHandler(
                            MetricsHTTPHandler(registry: registry, isReady: isReady)
                        )
                    }
                }
                .bind(to: address).get()
        } catch {
            settle(.failure(error))
            throw error
        }
        let local = channel.localAddress ?? address
        settle(.success(local))
        logger.info("metrics listening", metadata: ["address": "\(local.endpointDescription)"])
        try? await gracefulShutdown()
        try? await channel.close()
    }
}
