import DoTCore
import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#endif

/// Sends pipelined A queries for unique names through `DoTUpstreamTransport` for a fixed time and
/// prints one line: `queries=N seconds=S qps=Q connections=C timeouts=T`.
///
/// Usage: TransportLoad PORT CA_FILE NAME SECONDS IN_FLIGHT LOOPS
@main
struct TransportLoad {
    static func main() async throws {
        let arguments = CommandLine.arguments
        guard arguments.count == 7, let port = Int(arguments[1]), let seconds = Int(arguments[4]),
            let inFlight = Int(arguments[5]), let loops = Int(arguments[6])
        else {
            print("usage: TransportLoad PORT CA_FILE NAME SECONDS IN_FLIGHT LOOPS")
            exit(64)
        }
        var tls = TLSClientConfiguration.makeStrict()
        tls.trustRoots = .pemFile(arguments[2])
        let transport = DoTUpstreamTransport(
            configuration: .init(
                upstream: UpstreamAddress(host: "127.0.0.1", port: port, authenticationName: arguments[3])
            ),
            tlsContext: try TLSClientContext(configuration: tls)
        )
        let group = MultiThreadedEventLoopGroup(numberOfThreads: loops)
        // Encode the queries up front, as dnsperf reads its data file up front.
        let queries = try (0..<200_000).map { index in
            try DNSMessage.query(
                name: DNSName(parsing: "l\(index).unique.test."),
                type: .a,
                id: UInt16(truncatingIfNeeded: index)
            ).encoded()
        }
        let end = NIODeadline.now() + .seconds(Int64(seconds))
        let start = NIODeadline.now()
        let counts = try await withThrowingTaskGroup(of: (Int, Int).self) { tasks in
            for loopIndex in 0..<loops {
                let loop = group.next()
                tasks.addTask {
                    try await loop.flatSubmit {
                        Self.drive(
                            transport: transport,
                            queries: queries,
                            offset: loopIndex,
                            stride: loops,
                            inFlight: inFlight / loops,
                            until: end,
                            on: loop
                        )
                    }.get()
                }
            }
            var total = (0, 0)
            for try await (answered, failed) in tasks { total = (total.0 + answered, total.1 + failed) }
            return total
        }
        let elapsed = Double((NIODeadline.now() - start).nanoseconds) / 1e9
        let connections = await transport.openConnections()
        print(
            "queries=\(counts.0) seconds=\((elapsed * 100).rounded() / 100) qps=\(Int(Double(counts.0) / elapsed)) connections=\(connections) failures=\(counts.1)"
        )
        await transport.shutdown()
        try await group.shutdownGracefully()
    }

    /// Keeps `inFlight` queries outstanding on one event loop until `end`; completes with
    /// (answered, failed).
    static func drive(
        transport: DoTUpstreamTransport,
        queries: [ByteBuffer],
        offset: Int,
        stride: Int,
        inFlight: Int,
        until end: NIODeadline,
        on loop: any EventLoop
    ) -> EventLoopFuture<(Int, Int)> {
        let done = loop.makePromise(of: (Int, Int).self)
        let state = NIOLoopBoundBox((next: offset, answered: 0, failed: 0, outstanding: 0), eventLoop: loop)
        @Sendable func launch() {
            guard NIODeadline.now() < end else {
                if state.value.outstanding == 0 { done.succeed((state.value.answered, state.value.failed)) }
                return
            }
            let query = queries[state.value.next % queries.count]
            let expectedID = query.getInteger(at: query.readerIndex, as: UInt16.self)
            state.value.next += stride
            state.value.outstanding += 1
            transport.send(query, deadline: .now() + .seconds(2), on: loop).whenComplete { result in
                state.value.outstanding -= 1
                switch result {
                case .success(let reply):
                    // Count only real answers: our ID, NOERROR, one answer record.
                    if let view = try? DNSMessageView(reply), view.id == expectedID, view.responseCode == .noError,
                        view.answerCount == 1
                    {
                        state.value.answered += 1
                    } else {
                        state.value.failed += 1
                    }
                case .failure: state.value.failed += 1
                }
                launch()
            }
        }
        for _ in 0..<max(1, inFlight) { launch() }
        return done.futureResult
    }
}
