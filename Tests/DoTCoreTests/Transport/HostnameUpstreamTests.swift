import DoTCore
import DoTCoreTesting
import MetricsTestKit
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing

/// Upstreams given by host name: bootstrap and system resolution, and re-resolution after the TTL.
@Suite(.serialized) struct HostnameUpstreamTests {
    let group = MultiThreadedEventLoopGroup.singleton

    /// Answers each lookup with the next scripted resolution (the last one repeats).
    struct ScriptedResolver: UpstreamHostResolver {
        let answers: [UpstreamHostResolution]
        let calls = NIOLockedValueBox(0)
        func resolve(_ host: String, on eventLoop: any EventLoop) -> EventLoopFuture<UpstreamHostResolution> {
            let call = calls.withLockedValue { calls in
                defer { calls += 1 }
                return calls
            }
            return eventLoop.makeSucceededFuture(answers[min(call, answers.count - 1)])
        }
    }

    static func query(id: UInt16 = 5) throws -> ByteBuffer {
        try DNSMessage.query(name: "a.test.", type: .a, id: id).encoded()
    }

    @Test func anExpiredAnswerIsRefreshedInTheBackgroundAndANewAddressIsAdopted() async throws {
        let metrics = TestMetrics()
        let server = try await TestDoTServer.start(group: group)
        // First a dead address that expires at once, then the live one for an hour.
        let resolver = ScriptedResolver(answers: [
            UpstreamHostResolution(addresses: ["127.0.0.9"], timeToLive: .zero),
            UpstreamHostResolution(addresses: ["127.0.0.1", "::1"], timeToLive: .hours(1)),
        ])
        let transport = HostnameUpstreamTransport(
            host: TestCertificates.serverName,
            port: server.port,
            resolver: resolver,
            tlsContext: try TLSClientContext(configuration: TestCertificates.clientConfiguration()),
            configuration: .init(upstream: UpstreamAddress(host: "ignored"), connectTimeout: .milliseconds(500)),
            metrics: DNSProxyMetrics(factory: metrics)
        )
        #expect(transport.name == "tls://dns.test:\(server.port)")
        let loop = group.next()
        await #expect(throws: UpstreamError.self) {
            try await transport.send(try Self.query(), deadline: .now() + .seconds(2), on: loop).get()
        }
        #expect(transport.currentAddress?.host == "127.0.0.9" && transport.lookupCount == 1)
        // Expired: this query still uses the old address while the refresh runs.
        await #expect(throws: UpstreamError.self) {
            try await transport.send(try Self.query(), deadline: .now() + .seconds(2), on: loop).get()
        }
        #expect(transport.lookupCount == 2)
        #expect(
            transport.currentAddress
                == UpstreamAddress(host: "127.0.0.1", port: server.port, authenticationName: "dns.test")
        )
        // Fresh for an hour: no more lookups, and the certificate is checked against the name.
        for id in 0..<3 {
            let reply = try DNSMessage(
                decoding: try await transport.send(
                    try Self.query(id: UInt16(id)),
                    deadline: .now() + .seconds(2),
                    on: loop
                ).get()
            )
            #expect(reply.header.id == UInt16(id) && reply.answers.count == 1)
        }
        #expect(transport.lookupCount == 2)
        // Every address's connections are reported under the upstream's name, not the address.
        let label = [("upstream", transport.name)]
        #expect(
            try metrics.expectCounter(DNSProxyMetrics.Name.upstreamHandshakes, label + [("resumed", "false")])
                .totalValue >= 1
        )
        #expect(try metrics.expectMeter(DNSProxyMetrics.Name.upstreamConnections, label).lastValue ?? 0 >= 1)
        await transport.shutdown()
        try await server.stop()
    }

    @Test func aFailedLookupFailsTheQueryAndIsRetriedNextTime() async throws {
        struct Failing: UpstreamHostResolver {
            func resolve(_ host: String, on eventLoop: any EventLoop) -> EventLoopFuture<UpstreamHostResolution> {
                eventLoop.makeFailedFuture(UpstreamError(.connectionFailed, upstream: host, detail: "scripted"))
            }
        }
        let transport = HostnameUpstreamTransport(
            host: "dns.test",
            authenticationName: "other.test",
            resolver: Failing(),
            tlsContext: try TLSClientContext(configuration: TestCertificates.clientConfiguration())
        )
        #expect(transport.name == "tls://dns.test:853#other.test")
        for _ in 0..<2 {
            await #expect(throws: UpstreamError.self) {
                try await transport.send(try Self.query(), deadline: .now() + .seconds(1), on: group.next()).get()
            }
        }
        await #expect(throws: UpstreamError.self) { try await transport.prepare(on: group.next()).get() }
        #expect(transport.lookupCount == 3 && transport.currentAddress == nil)
    }

    @Test func theBootstrapServerResolvesTheUpstreamNameForARealUnbound() async throws {
        let rig = try UnboundRig()
        defer { rig.stop() }
        let resolver = BootstrapHostResolver(
            servers: [try SocketAddress(ipAddress: "127.0.0.1", port: rig.dnsPort)],
            timeout: .seconds(1),
            minimumTimeToLive: .seconds(10)
        )
        let resolution = try await resolver.resolve(rig.serverName, on: group.next()).get()
        #expect(resolution == UpstreamHostResolution(addresses: ["127.0.0.1"], timeToLive: .seconds(60)))
        await #expect(throws: UpstreamError.self) { try await resolver.resolve("nope.test", on: group.next()).get() }
        await #expect(throws: UpstreamError.self) {
            try await BootstrapHostResolver(servers: []).resolve("dns.test", on: group.next()).get()
        }

        var tls = TLSClientConfiguration.makeStrict()
        tls.trustRoots = .pemFile(rig.caFile)
        let transport = HostnameUpstreamTransport(
            host: rig.serverName,
            port: rig.dotPort,
            resolver: resolver,
            tlsContext: try TLSClientContext(configuration: tls)
        )
        #expect(try await transport.prepare(on: group.next()).get().host == "127.0.0.1")
        let reply = try DNSMessage(
            decoding: try await transport.send(try Self.query(), deadline: .now() + .seconds(3), on: group.next()).get()
        )
        #expect(reply.answers.count == 2)
        await transport.shutdown()
    }

    /// Only `localhost`, from /etc/hosts: a name the hosts file lacks could make the system resolver
    /// query the network.
    @Test func theSystemResolverReadsTheHostsFile() async throws {
        let resolver = SystemHostResolver(timeToLive: .seconds(7))
        let resolution = try await resolver.resolve("localhost", on: group.next()).get()
        #expect(resolution.addresses.contains("127.0.0.1") && resolution.timeToLive == .seconds(7))
    }
}
