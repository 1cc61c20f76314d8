import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#endif

/// The connections to one upstream from one event loop.
///
/// Queries go to the least loaded connection that has room; a new connection opens only when every
/// open one is full, so a steady load runs over one pipelined connection. Owned by its event loop.
final class DoTConnectionSet: DoTConnectionOwner {
    let eventLoop: any EventLoop
    let upstream: UpstreamAddress
    let configuration: DoTUpstreamTransport.Configuration
    let tlsContext: TLSClientContext
    let logger: Logger
    let metrics: UpstreamMetrics
    private let resumptionData: NIOLockedValueBox<[UInt8]?>
    private var connections: [DoTConnection] = []
    private var nextIdentifier = 0
    private var isShutDown = false
    /// One timer for every query's deadline, set for the earliest one it knows of; a timer per query
    /// cost an allocation and a heap insertion on every miss.
    private var deadlineTimer: Scheduled<Void>?
    private var deadlineTimerFires: NIODeadline?

    init(
        eventLoop: any EventLoop,
        configuration: DoTUpstreamTransport.Configuration,
        tlsContext: TLSClientContext,
        resumptionData: NIOLockedValueBox<[UInt8]?>,
        metrics: UpstreamMetrics,
        logger: Logger
    ) {
        self.metrics = metrics
        self.eventLoop = eventLoop
        self.upstream = configuration.upstream
        self.configuration = configuration
        self.tlsContext = tlsContext
        self.resumptionData = resumptionData
        self.logger = logger
    }

    var openConnections: Int { connections.count }

    func submit(_ query: DoTQuery) {
        guard !isShutDown else {
            query.fail(
                UpstreamError(.shutdown, upstream: upstream.description, detail: "the transport is shutting down")
            )
            return
        }
        watchDeadline(query.deadline)
        if let maximumAge = configuration.maximumConnectionAge {
            let now = NIODeadline.now()
            for connection in connections where connection.acceptsQueries && now - connection.openedAt > maximumAge {
                connection.close(reason: "connection retired after \(maximumAge)")
            }
        }
        var best: DoTConnection?
        for connection in connections
        where connection.acceptsQueries && connection.inFlight < configuration.maximumInFlightPerConnection {
            if best == nil || connection.inFlight < best!.inFlight { best = connection }
        }
        if let best {
            best.enqueue(query)
        } else if connections.count < configuration.maximumConnectionsPerEventLoop {
            open(for: query)
        } else {
            query.fail(
                UpstreamError(
                    .overloaded,
                    upstream: upstream.description,
                    detail:
                        "\(connections.count) connections with \(configuration.maximumInFlightPerConnection) queries each in flight"
                )
            )
        }
    }

    /// Makes sure the deadline timer fires by `deadline`.
    private func watchDeadline(_ deadline: NIODeadline) {
        if let fires = deadlineTimerFires, fires <= deadline { return }
        deadlineTimer?.cancel()
        deadlineTimerFires = deadline
        deadlineTimer = eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [self] in
            expireDueQueries()
        }
    }

    /// Fails every query whose deadline has passed, then sets the timer for the earliest one left.
    private func expireDueQueries() {
        deadlineTimer = nil
        deadlineTimerFires = nil
        let now = eventLoop.now
        var due: [DoTQuery] = []
        var next: NIODeadline?
        for connection in connections {
            connection.forEachQuery { query in
                guard !query.isDone else { return }
                if query.deadline <= now {
                    due.append(query)
                } else if next == nil || query.deadline < next! {
                    next = query.deadline
                }
            }
        }
        for query in due { expire(query, now: now) }
        if let next { watchDeadline(next) }
    }

    private func expire(_ query: DoTQuery, now: NIODeadline) {
        guard !query.isDone else { return }
        for connection in connections { connection.expire(query, now: now) }
        query.fail(UpstreamError(.timeout, upstream: upstream.description, detail: "no reply before the deadline"))
    }

    /// Opens a connection with `query` already queued on it: the connection can fail before `connect`
    /// returns (an address or socket option the kernel refuses), and its queued queries fail with it.
    private func open(for query: DoTQuery) {
        nextIdentifier += 1
        let connection = DoTConnection(
            owner: self,
            identifier: nextIdentifier,
            maximumQueries: configuration.maximumQueriesPerConnection,
            idleTimeout: configuration.idleTimeout
        )
        connections.append(connection)
        connection.enqueue(query)
        metrics.connectionsOpened.increment()
        metrics.connections.increment()
        logger.debug(
            "connecting",
            metadata: ["upstream": "\(upstream)", "connection": .stringConvertible(nextIdentifier)]
        )
        let address: SocketAddress
        do {
            address = try upstream.socketAddress()
        } catch {
            connection.connectionClosed(
                error: UpstreamError(.connectionFailed, upstream: upstream.description, detail: "\(error)")
            )
            return
        }
        let boundConnection = NIOLoopBound(connection, eventLoop: eventLoop)
        let boundSelf = NIOLoopBound(self, eventLoop: eventLoop)
        let context = tlsContext
        let serverName = upstream.verificationName
        let resumption = resumptionData.withLockedValue { $0 }
        ClientBootstrap(group: eventLoop)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .connectTimeout(configuration.connectTimeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    try sync.addHandler(
                        GnuTLSHandler(client: context, serverName: serverName, resumptionData: resumption)
                    )
                    try sync.addHandler(boundConnection.value)
                }
            }
            .connect(to: address)
            .whenComplete { result in
                let connection = boundConnection.value
                switch result {
                case .success:
                    connection.connected()
                case .failure(let error):
                    connection.connectionClosed(error: boundSelf.value.upstreamError(for: error))
                }
            }
    }

    // MARK: DoTConnectionOwner

    func connection(_ connection: DoTConnection, reported event: DoTConnectionEvent) {
        switch event {
        case .malformedReply: metrics.malformedReplies.increment()
        case .unmatchedReply: metrics.unmatchedReplies.increment()
        case .retried: metrics.retries.increment()
        case .handshake(let resumed): (resumed ? metrics.resumedHandshakes : metrics.handshakes).increment()
        }
    }

    func resubmit(_ query: DoTQuery) {
        submit(query)
    }

    func connectionDidClose(_ connection: DoTConnection, error: UpstreamError) {
        guard let position = connections.firstIndex(where: { $0 === connection }) else { return }
        connections.remove(at: position)
        metrics.connections.decrement()
    }

    func storeResumptionData(_ data: [UInt8]) {
        resumptionData.withLockedValue { $0 = data }
    }

    /// Translates what the channel reported into an error that names the upstream.
    func upstreamError(for error: any Error) -> UpstreamError {
        let name = upstream.description
        if let error = error as? UpstreamError { return error }
        if let failure = error as? TLSHandshakeFailure {
            if failure.pinMismatch {
                return UpstreamError(
                    .pinMismatch,
                    upstream: name,
                    detail: "no certificate in the chain matches a configured SPKI pin"
                )
            }
            if let description = failure.certificateStatusDescription {
                return UpstreamError(.certificateRejected, upstream: name, detail: description, tlsError: failure.error)
            }
            if failure.closedEarly {
                return UpstreamError(
                    .tlsHandshakeFailed,
                    upstream: name,
                    detail: "the connection closed during the TLS handshake"
                )
            }
            return UpstreamError(
                .tlsHandshakeFailed,
                upstream: name,
                detail: failure.error?.description ?? "",
                tlsError: failure.error
            )
        }
        if let error = error as? GnuTLSError {
            return UpstreamError(.tlsHandshakeFailed, upstream: name, detail: error.description, tlsError: error)
        }
        if let errno = Self.localExhaustionErrno(in: error) {
            return UpstreamError(
                .localResourcesExhausted,
                upstream: name,
                detail: "cannot open a socket: \(String(cString: strerror(errno))) (errno \(errno))"
            )
        }
        let errnos = Self.socketErrnos(in: error)
        if !errnos.isEmpty, errnos.allSatisfy({ $0 == ECONNREFUSED }) {
            return UpstreamError(.connectionRefused, upstream: name)
        }
        if case ChannelError.connectTimeout = error {
            return UpstreamError(.timeout, upstream: name, detail: "TCP connect timed out")
        }
        let detail =
            errnos.isEmpty
            ? "\(error)" : errnos.map { "\(String(cString: strerror($0))) (errno \($0))" }.joined(separator: "; ")
        return UpstreamError(.connectionFailed, upstream: name, detail: detail)
    }

    /// The errno of each socket error in `error` (one per address tried), so that a log line says
    /// `Network is unreachable (errno 101)` once, not NIO's nested descriptions of it.
    private static func socketErrnos(in error: any Error) -> [Int32] {
        if let error = error as? IOError { return [error.errnoCode] }
        if let error = error as? NIOConnectionError {
            return error.connectionErrors.compactMap { ($0.error as? IOError)?.errnoCode }
        }
        return []
    }

    /// The errno of `error` when it says the proxy ran out of descriptors or kernel memory.
    private static func localExhaustionErrno(in error: any Error) -> Int32? {
        let exhausted: Set<Int32> = [EMFILE, ENFILE, ENOBUFS, ENOMEM]
        return socketErrnos(in: error).first(where: exhausted.contains)
    }

    func shutdown() {
        isShutDown = true
        deadlineTimer?.cancel()
        deadlineTimer = nil
        deadlineTimerFires = nil
        for connection in connections { connection.close(reason: "shutdown") }
    }
}

@available(*, unavailable)
extension DoTConnectionSet: Sendable {}
