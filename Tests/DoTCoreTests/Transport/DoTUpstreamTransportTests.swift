import DoTCore
import DoTCoreTesting
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing

/// The DoT transport against the in-process GnuTLS server on 127.0.0.1, with scripted faults.
@Suite(.serialized) struct DoTUpstreamTransportTests {
    let group = MultiThreadedEventLoopGroup.singleton
    /// What the transports of one test count; each test gets its own.
    let recorded = RecordedMetrics()

    func makeTransport(
        port: Int,
        name: String? = TestCertificates.serverName,
        pins: [String] = [],
        configure: (inout DoTUpstreamTransport.Configuration) -> Void = { _ in }
    ) throws -> DoTUpstreamTransport {
        var configuration = DoTUpstreamTransport.Configuration(
            upstream: UpstreamAddress(host: "127.0.0.1", port: port, authenticationName: name)
        )
        configure(&configuration)
        return DoTUpstreamTransport(
            configuration: configuration,
            tlsContext: try TLSClientContext(configuration: TestCertificates.clientConfiguration(pins: pins)),
            metrics: recorded.metrics
        )
    }

    static func query(_ name: DNSName = "a.test.", id: UInt16 = 0x4242, type: DNSRecordType = .a) throws -> ByteBuffer {
        try DNSMessage.query(name: name, type: type, id: id).encoded()
    }

    func expectFailure(
        _ code: UpstreamError.Code,
        _ body: () async throws -> Void,
        sourceLocation: SourceLocation = #_sourceLocation
    ) async {
        do {
            try await body()
            Issue.record("expected \(code), got success", sourceLocation: sourceLocation)
        } catch let error as UpstreamError {
            #expect(error.code == code, "\(error)", sourceLocation: sourceLocation)
            #expect(error.upstream.contains("127.0.0.1"), sourceLocation: sourceLocation)
        } catch {
            Issue.record("expected UpstreamError, got \(error)", sourceLocation: sourceLocation)
        }
    }

    @Test func pipelinesManyQueriesOverOneConnectionWithOriginalIDs() async throws {
        let padded = NIOLockedValueBox(0)
        let server = try await TestDoTServer.start(group: group) { query in
            if let wire = try? query.encoded(), wire.readableBytes % 128 == 0, query.edns?.option(.padding) != nil {
                padded.withLockedValue { $0 += 1 }
            }
            return .reply(TestDoTServer.answer(query))
        }
        let transport = try makeTransport(port: server.port)
        let loop = group.next()
        let futures = try (0..<200).map { index in
            transport.send(
                try Self.query(DNSName(parsing: "n\(index).test."), id: UInt16(index)),
                deadline: .now() + .seconds(5),
                on: loop
            )
        }
        for (index, future) in futures.enumerated() {
            let reply = try DNSMessage(decoding: try await future.get())
            #expect(reply.header.id == UInt16(index))
            #expect(reply.questions.first?.name == (try DNSName(parsing: "n\(index).test.")))
            #expect(reply.answers.first?.rdata == .a(IPv4Address(192, 0, 2, 1)))
            #expect(reply.edns?.option(.padding) == nil)
        }
        #expect(
            recorded.count(DNSProxyMetrics.Name.upstreamConnectionsOpened, of: transport) == 1
                && server.connectionCount == 1
        )
        #expect(padded.withLockedValue { $0 } == 200)
        await transport.shutdown()
        try await server.stop()
    }

    @Test func repliesAreMatchedOutOfOrder() async throws {
        let server = try await TestDoTServer.start(group: group) { query in
            let reply = TestDoTServer.answer(query)
            return query.questions.first?.name == "slow.test."
                ? .delayedReply(reply, .milliseconds(300)) : .reply(reply)
        }
        let transport = try makeTransport(port: server.port)
        let loop = group.next()
        let order = NIOLockedValueBox<[String]>([])
        let slow = transport.send(try Self.query("slow.test.", id: 1), deadline: .now() + .seconds(5), on: loop)
        let fast = transport.send(try Self.query("fast.test.", id: 2), deadline: .now() + .seconds(5), on: loop)
        slow.whenSuccess { _ in order.withLockedValue { $0.append("slow") } }
        fast.whenSuccess { _ in order.withLockedValue { $0.append("fast") } }
        #expect(try DNSMessage(decoding: await slow.get()).header.id == 1)
        #expect(try DNSMessage(decoding: await fast.get()).header.id == 2)
        #expect(order.withLockedValue { $0 } == ["fast", "slow"])
        #expect(recorded.count(DNSProxyMetrics.Name.upstreamConnectionsOpened, of: transport) == 1)
        await transport.shutdown()
        try await server.stop()
    }

    @Test func aReplyWithTheWrongIDOrQuestionIsDroppedAndNeverDelivered() async throws {
        let server = try await TestDoTServer.start(group: group) { query in
            var reply = TestDoTServer.answer(query)
            if query.questions.first?.name == "wrong-id.test." {
                reply.header.id &+= 1
            } else {
                reply.questions = [DNSQuestion(name: "spoofed.test.", type: .a)]
            }
            return .reply(reply)
        }
        let transport = try makeTransport(port: server.port)
        let loop = group.next()
        await expectFailure(.timeout) {
            _ = try await transport.send(
                try Self.query("wrong-id.test."),
                deadline: .now() + .milliseconds(300),
                on: loop
            ).get()
        }
        await expectFailure(.timeout) {
            _ = try await transport.send(
                try Self.query("wrong-question.test."),
                deadline: .now() + .milliseconds(300),
                on: loop
            ).get()
        }
        #expect(
            recorded.count(DNSProxyMetrics.Name.upstreamDroppedReplies, of: transport, [("reason", "unmatched")]) == 2
        )
        await transport.shutdown()
        try await server.stop()
    }

    @Test func queriesInFlightDuringAResetAreRetriedOnAFreshConnection() async throws {
        let resets = NIOLockedValueBox(0)
        let server = try await TestDoTServer.start(group: group) { query in
            let first = resets.withLockedValue { count -> Bool in
                defer { count += 1 }
                return count == 0
            }
            return first ? .closeConnection : .reply(TestDoTServer.answer(query))
        }
        let transport = try makeTransport(port: server.port)
        let loop = group.next()
        // Open and warm the connection first, so the reset happens after the handshake.
        let reply = try await transport.send(try Self.query(id: 7), deadline: .now() + .seconds(5), on: loop).get()
        #expect(try DNSMessage(decoding: reply).header.id == 7)
        #expect(recorded.count(DNSProxyMetrics.Name.upstreamRetries, of: transport) == 1)
        #expect(recorded.count(DNSProxyMetrics.Name.upstreamConnectionsOpened, of: transport) == 2)
        await transport.shutdown()
        try await server.stop()
    }

    @Test func theDeadlineHoldsAgainstAServerThatNeverAnswers() async throws {
        for mode in [TestDoTServer.Mode.silent, .tls(TestCertificates.server)] {
            let server = try await TestDoTServer.start(mode: mode, group: group) { _ in .silence }
            let transport = try makeTransport(port: server.port)
            let start = NIODeadline.now()
            await expectFailure(.timeout) {
                _ = try await transport.send(try Self.query(), deadline: .now() + .milliseconds(250), on: group.next())
                    .get()
            }
            let elapsed = NIODeadline.now() - start
            #expect(elapsed < .seconds(2), "the deadline took \(elapsed)")
            await transport.shutdown()
            try await server.stop()
        }
    }

    @Test func garbageInsteadOfTLSFailsTheHandshake() async throws {
        let server = try await TestDoTServer.start(mode: .garbage, group: group)
        let transport = try makeTransport(port: server.port)
        await expectFailure(.tlsHandshakeFailed) {
            _ = try await transport.send(try Self.query(), deadline: .now() + .seconds(5), on: group.next()).get()
        }
        await transport.shutdown()
        try await server.stop()
    }

    @Test(arguments: [
        ("wrong name", TestCertificates.wrongName), ("untrusted CA", TestCertificates.untrusted),
        ("expired", TestCertificates.expired),
        ("client authentication only", TestCertificates.clientAuthenticationOnly),
        ("name only in the common name", TestCertificates.commonNameOnly),
    ])
    func badCertificatesAreRejected(label: String, identity: TestCertificates.Identity) async throws {
        let server = try await TestDoTServer.start(mode: .tls(identity), group: group)
        let transport = try makeTransport(port: server.port)
        await expectFailure(.certificateRejected) {
            _ = try await transport.send(try Self.query(), deadline: .now() + .seconds(5), on: group.next()).get()
        }
        #expect(server.queryCount == 0, "\(label): a query reached a server that failed verification")
        await transport.shutdown()
        try await server.stop()
    }

    @Test func pinsAreEnforced() async throws {
        let server = try await TestDoTServer.start(group: group)
        let good = try makeTransport(port: server.port, pins: [TestCertificates.serverSPKIPin])
        _ = try await good.send(try Self.query(), deadline: .now() + .seconds(5), on: group.next()).get()
        let bad = try makeTransport(port: server.port, pins: [TestCertificates.otherSPKIPin])
        await expectFailure(.pinMismatch) {
            _ = try await bad.send(try Self.query(), deadline: .now() + .seconds(5), on: group.next()).get()
        }
        await good.shutdown()
        await bad.shutdown()
        try await server.stop()
    }

    @Test func theIPAddressIsVerifiedWhenNoNameIsGiven() async throws {
        let server = try await TestDoTServer.start(group: group)
        let transport = try makeTransport(port: server.port, name: nil)
        _ = try await transport.send(try Self.query(), deadline: .now() + .seconds(5), on: group.next()).get()
        await transport.shutdown()
        try await server.stop()
    }

    /// The error says "connection refused" once, without NIO's nested descriptions of the errno.
    @Test func aClosedPortIsConnectionRefused() async throws {
        let server = try await TestDoTServer.start(group: group)
        let port = server.port
        try await server.stop()
        let transport = try makeTransport(port: port)
        await expectFailure(.connectionRefused) {
            _ = try await transport.send(try Self.query(), deadline: .now() + .seconds(5), on: group.next()).get()
        }
        do {
            _ = try await transport.send(try Self.query(), deadline: .now() + .seconds(5), on: group.next()).get()
        } catch {
            #expect("\(error)" == "upstream 127.0.0.1:\(port)#\(TestCertificates.serverName): connection refused")
        }
        await transport.shutdown()
    }

    /// A connection can fail while it is being set up, before `connect` returns (a socket option or
    /// an address the kernel refuses); the query that opened it must fail then, not wait forever. An
    /// IPv6 link-local address without a scope is refused by `connect` itself: nothing is sent. The
    /// outcome is read after letting the loop run its queued tasks, so a regression fails instead of
    /// hanging.
    @Test func aConnectionThatFailsWhileOpeningFailsItsQuery() async throws {
        let transport = DoTUpstreamTransport(
            configuration: .init(
                upstream: UpstreamAddress(host: "fe80::1", port: 853, authenticationName: TestCertificates.serverName)
            ),
            tlsContext: try TLSClientContext(configuration: TestCertificates.clientConfiguration()),
            metrics: recorded.metrics
        )
        let loop = group.next()
        let outcome = NIOLockedValueBox<Result<ParsedDNSMessage, UpstreamError>?>(nil)
        let query = try ParsedDNSMessage(Self.query())
        try await loop.submit {
            transport.send(query, deadline: .now() + .seconds(30), on: loop) { result in
                outcome.withLockedValue { $0 = result }
            }
        }.get()
        for _ in 0..<100 where outcome.withLockedValue({ $0 == nil }) { try await loop.submit {}.get() }
        switch outcome.withLockedValue({ $0 }) {
        case .failure(let error): #expect(error.code == .connectionFailed, "\(error)")
        case .success: Issue.record("expected a connection failure, got a reply")
        case nil: Issue.record("the query was neither answered nor failed")
        }
        #expect(recorded.count(DNSProxyMetrics.Name.upstreamConnectionsOpened, of: transport) == 1)
        #expect(await transport.openConnections() == 0)
        await transport.shutdown()
    }

    @Test func aReconnectResumesTheTLSSession() async throws {
        let server = try await TestDoTServer.start(group: group)
        let transport = try makeTransport(port: server.port) { $0.maximumQueriesPerConnection = 1 }
        let loop = group.next()
        for id in UInt16(1)...3 {
            let reply = try await transport.send(try Self.query(id: id), deadline: .now() + .seconds(5), on: loop).get()
            #expect(try DNSMessage(decoding: reply).header.id == id)
        }
        #expect(recorded.count(DNSProxyMetrics.Name.upstreamConnectionsOpened, of: transport) == 3)
        #expect(recorded.count(DNSProxyMetrics.Name.upstreamHandshakes, of: transport, [("resumed", "true")]) >= 1)
        #expect(server.resumedHandshakeCount >= 1)
        await transport.shutdown()
        try await server.stop()
    }

    @Test func theCompletionFormAnswersOnTheGivenLoopWithAParsedReply() async throws {
        let server = try await TestDoTServer.start(group: group)
        let transport = try makeTransport(port: server.port)
        let loop = group.next()
        let query = try ParsedDNSMessage(Self.query(id: 0x0101))
        let (result, onLoop) = await withCheckedContinuation { continuation in
            transport.send(query, deadline: .now() + .seconds(5), on: loop) { result in
                continuation.resume(returning: (result, loop.inEventLoop))
            }
        }
        #expect(onLoop, "the completion runs on the loop it was given")
        let reply = try result.get()
        #expect(reply.answers(query) && reply.view.id == 0x0101)
        #expect(String(describing: reply.view) == String(describing: try DNSMessageView(reply.buffer)))
        await transport.shutdown()
        try await server.stop()
    }

    @Test func aMalformedQueryIsRefusedBeforeSending() async throws {
        let transport = try makeTransport(port: 9)
        await expectFailure(.malformedQuery) {
            _ = try await transport.send(
                ByteBuffer(bytes: [1, 2, 3]),
                deadline: .now() + .seconds(1),
                on: group.next()
            ).get()
        }
    }

    /// Passes each log message, with its `detail` metadata, to a stream the test can wait on.
    struct StreamingLogHandler: LogHandler {
        let continuation: AsyncStream<String>.Continuation
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .debug
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            continuation.yield("\(event.message) \(event.metadata?["detail"].map { "\($0)" } ?? "")")
        }
    }

    @Test(.timeLimit(.minutes(1))) func anIdleConnectionIsClosedAndTheNextQueryResumesTheSession() async throws {
        let server = try await TestDoTServer.start(group: group)
        let (events, continuation) = AsyncStream.makeStream(of: String.self)
        let transport = DoTUpstreamTransport(
            configuration: .init(
                upstream: UpstreamAddress(
                    host: "127.0.0.1",
                    port: server.port,
                    authenticationName: TestCertificates.serverName
                ),
                idleTimeout: .milliseconds(50)
            ),
            tlsContext: try TLSClientContext(configuration: TestCertificates.clientConfiguration()),
            metrics: recorded.metrics,
            logger: Logger(label: "test") { _ in StreamingLogHandler(continuation: continuation) }
        )
        let loop = group.next()
        _ = try await transport.send(try Self.query(id: 1), deadline: .now() + .seconds(5), on: loop).get()
        // Waits for the event, not for a time: the test's limit bounds it.
        for await event in events where event.hasPrefix("connection closed") {
            #expect(event.hasSuffix("idle"), "\(event)")
            break
        }
        #expect(await transport.openConnections() == 0)
        #expect(recorded.count(DNSProxyMetrics.Name.upstreamConnectionsOpened, of: transport) == 1)
        let reply = try await transport.send(try Self.query(id: 2), deadline: .now() + .seconds(5), on: loop).get()
        #expect(try DNSMessage(decoding: reply).header.id == 2)
        #expect(recorded.count(DNSProxyMetrics.Name.upstreamConnectionsOpened, of: transport) == 2)
        #expect(recorded.count(DNSProxyMetrics.Name.upstreamHandshakes, of: transport, [("resumed", "true")]) == 1)
        await transport.shutdown()
        continuation.finish()
        try await server.stop()
    }
}
