import DoTCore
import DoTCoreTesting
import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import NIOPosix
import Testing

/// The upstream pool: failover, health, back-off on a manual clock, and real DoT servers.
@Suite(.serialized) struct UpstreamPoolTests {
    let group = MultiThreadedEventLoopGroup.singleton

    static func query(_ name: DNSName = "a.test.", id: UInt16 = 7) throws -> ByteBuffer {
        try DNSMessage.query(name: name, type: .a, id: id).encoded()
    }

    /// What the pools of one test count; each test gets its own.
    let recorded = RecordedMetrics()

    /// A pool of `transports` named u0, u1…, reporting to ``recorded``.
    func makePool(
        _ transports: [any UpstreamTransport],
        loop: any EventLoop,
        configure: (inout UpstreamPool.Configuration) -> Void = { _ in }
    ) -> UpstreamPool {
        var configuration = UpstreamPool.Configuration()
        configure(&configuration)
        return UpstreamPool(
            members: transports.enumerated().map { UpstreamPool.Member(name: "u\($0.offset)", transport: $0.element) },
            configuration: configuration,
            healthEventLoop: loop,
            metrics: recorded.metrics
        )
    }

    /// Member `member`'s count of `name`, with `extra` labels.
    func count(_ name: String, _ member: String, _ extra: [(String, String)] = []) -> Int64 {
        recorded.count(name, [("upstream", member)] + extra)
    }

    typealias Name = DNSProxyMetrics.Name

    /// Sends one query on an embedded loop, where scripted transports complete at once.
    static func send(
        _ pool: UpstreamPool,
        on loop: EmbeddedEventLoop,
        id: UInt16 = 7
    ) throws -> Result<DNSMessage, UpstreamError> {
        let future = pool.send(try query(id: id), deadline: .now() + .seconds(2), on: loop)
        loop.run()
        let result = NIOLockedValueBox<Result<DNSMessage, UpstreamError>?>(nil)
        future.whenComplete { outcome in
            result.withLockedValue {
                $0 = outcome.flatMap { reply in Result { try DNSMessage(decoding: reply) } }.mapError {
                    $0 as! UpstreamError
                }
            }
        }
        loop.run()
        return try #require(result.withLockedValue { $0 })
    }

    @Test func aFailingUpstreamFailsOverAndIsMarkedDownAfterMaximumFailures() throws {
        let loop = EmbeddedEventLoop()
        let broken = ScriptedUpstreamTransport(behaviour: .fail(.connectionRefused))
        let good = ScriptedUpstreamTransport()
        let pool = makePool([broken, good], loop: loop) {
            $0.policy = .sequential
            $0.maximumFailures = 2
        }
        for id in 1...4 {
            let reply = try Self.send(pool, on: loop, id: UInt16(id)).get()
            #expect(reply.header.id == UInt16(id) && reply.answers.count == 1)
        }
        // Two failures marked u0 down; later queries went straight to u1.
        #expect(broken.queryCount == 2 && good.queryCount == 4)
        let statistics = pool.status()
        #expect(!statistics[0].isUp && statistics[0].downReason.contains("connection refused"))
        #expect(count(Name.upstreamErrors, "u0", [("kind", "connection_refused")]) == 2)
        #expect(count(Name.upstreamFailovers, "u0") == 2 && count(Name.upstreamDownTransitions, "u0") == 1)
        #expect(
            statistics[1].isUp && count(Name.upstreamQueries, "u1") == 4 && statistics[1].latency != nil
                && statistics[1].outstanding == 0
        )
        #expect(pool.hasUsableUpstream)
        pool.stopHealthChecks()
    }

    @Test func aMemberTimeoutMovesTheQueryOnBeforeItsShareOfTheDeadline() throws {
        let loop = EmbeddedEventLoop()
        let slow = ScriptedUpstreamTransport(behaviour: .silence)
        let fast = ScriptedUpstreamTransport()
        let pool = UpstreamPool(
            members: [
                UpstreamPool.Member(name: "slow", transport: slow, timeout: .milliseconds(100)),
                UpstreamPool.Member(name: "fast", transport: fast),
            ],
            configuration: UpstreamPool.Configuration(policy: .sequential),
            healthEventLoop: loop
        )
        let reply = NIOLockedValueBox<ByteBuffer?>(nil)
        pool.send(try Self.query(), deadline: loop.now + .seconds(2), on: loop).whenSuccess { answer in
            reply.withLockedValue { $0 = answer }
        }
        loop.advanceTime(by: .milliseconds(99))
        #expect(reply.withLockedValue { $0 } == nil && fast.queryCount == 0)
        loop.advanceTime(by: .milliseconds(1))
        #expect(reply.withLockedValue { $0 } != nil && fast.queryCount == 1, "not a second later, as the share would")
        pool.stopHealthChecks()
    }

    @Test func anUpdateKeepsTheMembersThatStayWithTheirHealthAndStatistics() throws {
        let loop = EmbeddedEventLoop()
        let broken = ScriptedUpstreamTransport(behaviour: .fail(.connectionRefused))
        let good = ScriptedUpstreamTransport()
        let pool = makePool([good, broken], loop: loop) {
            $0.policy = .sequential
            $0.maximumFailures = 1
        }
        pool.start()
        good.behaviour = .fail(.timeout)
        _ = try Self.send(pool, on: loop)  // u0 times out and goes down; u1 is refused and goes down
        #expect(pool.status().map(\.isUp) == [false, false])
        good.behaviour = .answer

        // u1 stays (same name, same transport), u0 leaves, u2 arrives; REFUSED no longer fails over.
        let fresh = ScriptedUpstreamTransport(behaviour: .respond(.refused))
        let removed = pool.update(
            members: [
                UpstreamPool.Member(name: "u2", transport: fresh),
                UpstreamPool.Member(name: "u1", transport: broken),
            ],
            configuration: UpstreamPool.Configuration(policy: .sequential, failoverResponseCodes: [.serverFailure])
        )
        #expect(removed.map(\.name) == ["u0"])
        let statistics = pool.status()
        #expect(statistics.map(\.name) == ["u2", "u1"])
        #expect(statistics[0].isUp && statistics[0].latency == nil, "a new member starts up, with no history")
        #expect(!statistics[1].isUp && statistics[1].downReason.contains("refused"), "the member that stayed kept it")
        #expect(pool.configuration.failoverResponseCodes == [.serverFailure])
        #expect(try Self.send(pool, on: loop).get().header.responseCode == .refused, "passed on, not failed over")
        #expect(fresh.queryCount == 1 && broken.queryCount == 1)

        // A member with the same name but another transport is a new member.
        let replacement = ScriptedUpstreamTransport()
        pool.update(
            members: [UpstreamPool.Member(name: "u1", transport: replacement)],
            configuration: UpstreamPool.Configuration()
        )
        #expect(pool.status().map(\.isUp) == [true])
        #expect(try Self.send(pool, on: loop).get().answers.count == 1 && replacement.queryCount == 1)
        pool.stopHealthChecks()
    }

    @Test func servfailAndRefusedFailOverButTheLastReplyIsPassedOnWhenAllGiveIt() throws {
        let loop = EmbeddedEventLoop()
        let servfail = ScriptedUpstreamTransport(behaviour: .respond(.serverFailure))
        let refused = ScriptedUpstreamTransport(behaviour: .respond(.refused))
        let pool = makePool([servfail, refused], loop: loop) { $0.policy = .sequential }
        // Both give a failover code: the client gets the last reply, not an error.
        #expect(try Self.send(pool, on: loop).get().header.responseCode == .refused)
        // An answering upstream is alive: failover replies never mark it down.
        for _ in 0..<5 { _ = try Self.send(pool, on: loop) }
        #expect(pool.status().allSatisfy { $0.isUp })
        #expect(
            count(Name.upstreamErrors, "u0", [("kind", "failover_rcode")]) == 6
                && count(Name.upstreamErrors, "u1", [("kind", "failover_rcode")]) == 6
        )
        #expect(count(Name.upstreamFailovers, "u0") == 6)
        refused.behaviour = .answer
        #expect(try Self.send(pool, on: loop).get().header.responseCode == .noError)

        // With SERVFAIL not configured as a failover code, it is passed on at once.
        let strict = makePool([servfail, refused], loop: loop) {
            $0.policy = .sequential
            $0.failoverResponseCodes = []
        }
        #expect(try Self.send(strict, on: loop).get().header.responseCode == .serverFailure)
        pool.stopHealthChecks()
        strict.stopHealthChecks()
    }

    @Test func probesBackOffOnTheManualClockWhileAnotherUpstreamIsUp() throws {
        let loop = EmbeddedEventLoop()
        let upstream = ScriptedUpstreamTransport(behaviour: .fail(.connectionReset))
        let other = ScriptedUpstreamTransport()
        let pool = makePool([upstream, other], loop: loop) {
            $0.policy = .sequential
            $0.maximumFailures = 1
            $0.initialProbeDelay = .seconds(1)
            $0.maximumProbeDelay = .seconds(8)
        }
        #expect(try Self.send(pool, on: loop).get().answers.count == 1)
        #expect(!pool.status()[0].isUp && pool.hasUsableUpstream)

        // Probes at +1 s, then 2 s, 4 s, 8 s and 8 s (the cap) after each failure.
        var probeTimes: [Int64] = []
        let start = loop.now
        for _ in 0..<(1 + 2 + 4 + 8 + 8) * 10 {
            let before = count(Name.upstreamProbes, "u0")
            loop.advanceTime(by: .milliseconds(100))
            if count(Name.upstreamProbes, "u0") > before {
                probeTimes.append((loop.now - start).nanoseconds / 1_000_000)
            }
        }
        #expect(probeTimes == [1_000, 3_000, 7_000, 15_000, 23_000])

        // It recovers: the next probe succeeds and queries flow to it again.
        upstream.behaviour = .answer
        loop.advanceTime(by: .seconds(8))
        #expect(pool.status()[0].isUp && count(Name.upstreamProbes, "u0") == 6)
        let sent = upstream.queryCount
        #expect(try Self.send(pool, on: loop).get().answers.count == 1)
        #expect(upstream.queryCount == sent + 1)
        // Probes stop once it is up.
        loop.advanceTime(by: .seconds(120))
        #expect(count(Name.upstreamProbes, "u0") == 6)
        pool.stopHealthChecks()
    }

    @Test func whileEveryUpstreamIsDownProbesComeEverySecondAndOneQueryPerIntervalStillGoesOut() throws {
        let loop = EmbeddedEventLoop()
        let upstream = ScriptedUpstreamTransport(behaviour: .fail(.connectionReset))
        let pool = makePool([upstream], loop: loop) {
            $0.maximumFailures = 1
            $0.initialProbeDelay = .seconds(1)
            $0.maximumProbeDelay = .seconds(60)
            $0.recoveryQueryInterval = .milliseconds(100)
        }
        #expect(throws: UpstreamError.self) { try Self.send(pool, on: loop).get() }
        #expect(!pool.hasUsableUpstream)
        // The next query goes out anyway (the first of its interval); the rest of the interval's fail
        // at once, without being sent.
        #expect(throws: UpstreamError.self) { try Self.send(pool, on: loop).get() }
        #expect(upstream.queryCount == 2 && count(Name.upstreamRecoveryQueries, "u0") == 1)
        for _ in 0..<5 {
            guard case .failure(let error) = try Self.send(pool, on: loop) else {
                Issue.record("expected a failure")
                return
            }
            #expect(error.code == .noUpstreamAvailable)
        }
        #expect(upstream.queryCount == 2)
        loop.advanceTime(by: .milliseconds(100))
        _ = try Self.send(pool, on: loop)
        #expect(upstream.queryCount == 3 && count(Name.upstreamRecoveryQueries, "u0") == 2)

        // Probes every second, without back-off, while nothing is up.
        let probes = count(Name.upstreamProbes, "u0")
        loop.advanceTime(by: .milliseconds(10_050))
        #expect(count(Name.upstreamProbes, "u0") - probes == 10)

        // The first reply to a client query brings it back, whatever the probes say.
        upstream.behaviour = .respond(.refused)
        loop.advanceTime(by: .milliseconds(100))
        #expect(try Self.send(pool, on: loop).get().header.responseCode == .refused)
        #expect(pool.hasUsableUpstream)
        pool.stopHealthChecks()
    }

    @Test func aProbeAnsweredWithAnyResponseCodeBringsTheUpstreamBack() throws {
        let loop = EmbeddedEventLoop()
        // An authoritative or filtering server: it refuses the root probe, but it is alive.
        let upstream = ScriptedUpstreamTransport(behaviour: .fail(.timeout))
        let pool = makePool([upstream], loop: loop) {
            $0.maximumFailures = 1
            $0.recoveryQueryInterval = nil
        }
        #expect(throws: UpstreamError.self) { try Self.send(pool, on: loop).get() }
        #expect(!pool.hasUsableUpstream)
        guard case .failure(let error) = try Self.send(pool, on: loop) else {
            Issue.record("expected a failure")
            return
        }
        #expect(error.code == .noUpstreamAvailable && upstream.queryCount == 1)
        upstream.behaviour = .respond(.refused)
        loop.advanceTime(by: .seconds(1))
        #expect(pool.hasUsableUpstream && count(Name.upstreamProbes, "u0") == 1)
        pool.stopHealthChecks()
    }

    @Test func whenTheLastUpstreamGoesDownTheOthersAreProbedWithinASecond() throws {
        let loop = EmbeddedEventLoop()
        let first = ScriptedUpstreamTransport(behaviour: .fail(.connectionRefused))
        let second = ScriptedUpstreamTransport()
        let pool = makePool([first, second], loop: loop) {
            $0.policy = .sequential
            $0.maximumFailures = 1
            $0.maximumProbeDelay = .seconds(60)
            $0.recoveryQueryInterval = nil
        }
        _ = try Self.send(pool, on: loop)
        // The first backs off to 32 s between probes while the second carries the load.
        loop.advanceTime(by: .seconds(1 + 2 + 4 + 8 + 16))
        #expect(count(Name.upstreamProbes, "u0") == 5)
        second.behaviour = .fail(.connectionRefused)
        #expect(throws: UpstreamError.self) { try Self.send(pool, on: loop).get() }
        #expect(!pool.hasUsableUpstream)
        // Both are now probed within a second, not after the first one's 32 s.
        first.behaviour = .answer
        loop.advanceTime(by: .seconds(1))
        #expect(pool.status()[0].isUp && count(Name.upstreamProbes, "u0") == 6)
        pool.stopHealthChecks()
    }

    @Test func aLocalShortageOfSocketsDoesNotMarkTheUpstreamDown() throws {
        let loop = EmbeddedEventLoop()
        let upstream = ScriptedUpstreamTransport(behaviour: .fail(.localResourcesExhausted))
        let pool = makePool([upstream], loop: loop) { $0.maximumFailures = 1 }
        for id in 1...5 { #expect(throws: UpstreamError.self) { try Self.send(pool, on: loop, id: UInt16(id)).get() } }
        #expect(
            pool.hasUsableUpstream && upstream.queryCount == 5
                && count(Name.upstreamErrors, "u0", [("kind", "local_resources_exhausted")]) == 5
        )
        pool.stopHealthChecks()
    }

    @Test func activeChecksMarkASilentlyBrokenUpstreamDownWithoutTraffic() throws {
        let loop = EmbeddedEventLoop()
        let upstream = ScriptedUpstreamTransport()
        let other = ScriptedUpstreamTransport()
        let pool = makePool([upstream, other], loop: loop) {
            $0.healthCheckInterval = .seconds(5)
            $0.maximumFailures = 2
            $0.probeName = "health.test."
            $0.probeType = .a
            $0.probeTimeout = .milliseconds(500)
        }
        pool.start()
        // A reply of any code shows the upstream is alive; only silence (or an error) counts.
        upstream.behaviour = .respond(.serverFailure)
        loop.advanceTime(by: .seconds(10))
        #expect(pool.status()[0].isUp)
        upstream.behaviour = .silence
        loop.advanceTime(by: .milliseconds(5_500))
        #expect(pool.status()[0].isUp)
        loop.advanceTime(by: .seconds(5))
        #expect(!pool.status()[0].isUp && pool.status()[1].isUp)
        #expect(count(Name.upstreamProbes, "u1") == 4)
        pool.stopHealthChecks()
        loop.advanceTime(by: .seconds(60))
        #expect(count(Name.upstreamProbes, "u1") == 4)
    }

    @Test func aSilentUpstreamGetsOnlyItsShareOfTheDeadline() throws {
        let loop = EmbeddedEventLoop()
        let silent = ScriptedUpstreamTransport(behaviour: .silence)
        let good = ScriptedUpstreamTransport()
        let pool = makePool([silent, good], loop: loop) { $0.policy = .sequential }
        let done = NIOLockedValueBox(false)
        pool.send(try Self.query(), deadline: loop.now + .seconds(1), on: loop).whenSuccess { _ in
            done.withLockedValue { $0 = true }
        }
        // Two upstreams left to try: the silent one gets half of the second.
        loop.advanceTime(by: .milliseconds(499))
        #expect(!done.withLockedValue { $0 } && good.queryCount == 0)
        loop.advanceTime(by: .milliseconds(1))
        #expect(done.withLockedValue { $0 } && good.queryCount == 1)
        #expect(
            count(Name.upstreamErrors, "u0", [("kind", "timeout")]) == 1 && count(Name.upstreamFailovers, "u0") == 1
        )
        pool.stopHealthChecks()
    }

    @Test func shutdownAndMalformedQueriesDoNotFailOver() async throws {
        let loop = group.next()
        let closing = ScriptedUpstreamTransport(behaviour: .fail(.shutdown))
        let good = ScriptedUpstreamTransport()
        let pool = makePool([closing, good], loop: loop) { $0.policy = .sequential }
        await #expect(throws: UpstreamError.self) {
            try await pool.send(try Self.query(), deadline: .now() + .seconds(1), on: loop).get()
        }
        await #expect(throws: UpstreamError.self) {
            try await pool.send(ByteBuffer(bytes: [1, 2, 3]), deadline: .now() + .seconds(1), on: loop).get()
        }
        #expect(good.queryCount == 0 && pool.status()[0].isUp)
        pool.stopHealthChecks()
    }

    // MARK: Real DoT servers

    @Test func oneUpstreamKilledMidLoadLosesNoQuery() async throws {
        let first = try await TestDoTServer.start(group: group)
        let second = try await TestDoTServer.start(group: group)
        let transports = try [first.makeTransport(), second.makeTransport()]
        let pool = UpstreamPool(
            members: transports.map(UpstreamPool.Member.init),
            configuration: .init(policy: .roundRobin),
            healthEventLoop: group.next(),
            metrics: recorded.metrics
        )
        let names = ["127.0.0.1:\(first.port)#dns.test", "127.0.0.1:\(second.port)#dns.test"]
        #expect(pool.members.map(\.name) == names)
        let loop = group.next()
        var answered = 0
        for batch in 0..<20 {
            if batch == 5 { try await first.stop() }
            let futures = try (0..<100).map { index in
                pool.send(
                    try Self.query(DNSName(parsing: "q\(batch)-\(index).test."), id: UInt16(index)),
                    deadline: .now() + .seconds(3),
                    on: loop
                )
            }
            for (index, future) in futures.enumerated() {
                let reply = try DNSMessage(decoding: try await future.get())
                #expect(reply.header.id == UInt16(index) && reply.answers.count == 1)
                answered += 1
            }
        }
        #expect(answered == 2_000)
        let statistics = pool.status()
        #expect(!statistics[0].isUp && count(Name.upstreamFailovers, names[0]) >= 3, "\(statistics[0])")
        #expect(count(Name.upstreamQueries, names[1]) > 1_000)
        pool.stopHealthChecks()
        for transport in transports { await transport.shutdown() }
        try await second.stop()
    }

    @Test func anUpstreamAnsweringServfailIsFailedOverToARealServer() async throws {
        let failing = try await TestDoTServer.start(group: group) { query in
            var reply = TestDoTServer.answer(query)
            reply.header.responseCode = .serverFailure
            reply.answers = []
            return .reply(reply)
        }
        let healthy = try await TestDoTServer.start(group: group)
        let transports = try [failing.makeTransport(), healthy.makeTransport()]
        let pool = UpstreamPool(
            members: transports.map(UpstreamPool.Member.init),
            configuration: .init(policy: .sequential),
            healthEventLoop: group.next()
        )
        for id in 0..<10 {
            let reply = try DNSMessage(
                decoding: try await pool.send(
                    try Self.query(id: UInt16(id)),
                    deadline: .now() + .seconds(3),
                    on: group.next()
                ).get()
            )
            #expect(reply.header.responseCode == .noError && reply.header.id == UInt16(id))
        }
        #expect(failing.queryCount == 10 && healthy.queryCount == 10)
        pool.stopHealthChecks()
        for transport in transports { await transport.shutdown() }
        try await failing.stop()
        try await healthy.stop()
    }
}
