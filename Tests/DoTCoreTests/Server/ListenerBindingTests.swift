import DoTCoreTesting
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing

@testable import DoTCore

/// Binding a listen address with port 0: the kernel picks the UDP port, and TCP may already use that
/// port (an outgoing connection's, say); the server then tries another. The TCP bind is replaced to
/// refuse on cue, since a real collision cannot be arranged.
@Suite(.serialized) struct ListenerBindingTests {
    let group = MultiThreadedEventLoopGroup.singleton

    func makeServer(port: Int, refusals: NIOLockedValueBox<Int>, refuse: Int) throws -> DNSProxyServer {
        DNSProxyServer(
            configuration: .init(listenAddresses: [try SocketAddress(ipAddress: "127.0.0.1", port: port)]),
            handler: ForwardingQueryHandler(transport: ScriptedUpstreamTransport(behaviour: .answer)),
            eventLoopGroup: group,
            metrics: DNSProxyMetrics(),
            logger: Logger(label: "test"),
            bindTCP: { bootstrap, address in
                if refusals.withLockedValue({ count in
                    count += 1
                    return count <= refuse
                }) {
                    throw IOError(errnoCode: EADDRINUSE, reason: "bind")
                }
                return try await bootstrap.bind(to: address).get()
            }
        )
    }

    @Test func aPortTakenForTCPIsRetriedOnAnotherPortThatServesBoth() async throws {
        let refusals = NIOLockedValueBox(0)
        try await makeServer(port: 0, refusals: refusals, refuse: 2).serving { port, _ in
            #expect(refusals.withLockedValue { $0 } == 3)
            let query = try DNSMessage.query(name: "a.test.", type: .a, id: 7).encoded()
            #expect(
                try DNSMessage(decoding: try await TestDNSClient.udp(query, port: port, group: group)).header.id == 7
            )
            #expect(try await TestDNSClient.tcp([query], port: port, group: group).count == 1)
        }
    }

    @Test func theRetryGivesUpAfterItsAttemptsWithTheBindError() async throws {
        let refusals = NIOLockedValueBox(0)
        let server = try makeServer(port: 0, refusals: refusals, refuse: .max)
        await #expect(throws: IOError.self) { try await server.run() }
        await #expect(throws: IOError.self) { try await server.listeningAddresses() }
        #expect(refusals.withLockedValue { $0 } == DNSProxyServer.ephemeralPortAttempts)
    }

    @Test func aFixedPortIsNotRetried() async throws {
        var port = 0
        // Binding port 0 may itself be retried, when TCP already uses the port the kernel picked for
        // UDP; only the fixed port's attempts are counted.
        try await makeServer(port: 0, refusals: NIOLockedValueBox(0), refuse: 0).serving { listening, _ in
            port = listening
        }
        // The port just freed, asked for by number: a refusal is the answer, not a retry elsewhere.
        let attempts = NIOLockedValueBox(0)
        let fixed = try makeServer(port: port, refusals: attempts, refuse: .max)
        await #expect(throws: IOError.self) { try await fixed.run() }
        #expect(attempts.withLockedValue { $0 } == 1, "one TCP bind, and no retry on another port")
    }
}
