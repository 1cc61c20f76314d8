import DoTCore
import DoTCoreTesting
import Foundation
import NIOCore
import NIOPosix
import ServiceLifecycle
import Testing

@testable import DotProxyServer

/// `--metrics-listen` end to end on loopback: the proxy in front of an in-process GnuTLS upstream,
/// scraped over HTTP, its output checked by a parser and by `promtool check metrics`.
@Suite struct MetricsEndpointTests {
    let group = MultiThreadedEventLoopGroup.singleton

    @Test func metricsMoveWithTrafficAndReadyFlipsWhenTheUpstreamGoesAway() async throws {
        let upstream = try await TestDoTServer.start(group: group)
        var configuration = try DotProxyCommand.parse([
            "--upstream", "127.0.0.1:\(upstream.port)#dns.test", "--ca-file", TestCertificates.caFile, "--max-fails",
            "1",
            "--metrics-listen", "127.0.0.1:9153",
        ]).makeConfiguration()
        #expect(configuration.metricsListen == (try SocketAddress(ipAddress: "127.0.0.1", port: 9153)))
        configuration.server.listenAddresses = [try SocketAddress(ipAddress: "127.0.0.1", port: 0)]
        configuration.metricsListen = try SocketAddress(ipAddress: "127.0.0.1", port: 0)
        let services = try ProxyBuilder.build(configuration, group: group, logger: .init(label: "test"))
        let metricsServer = try #require(services.metricsServer)
        let serviceGroup = ServiceGroup(services: services.all, logger: .init(label: "test"))
        async let running: Void = serviceGroup.run()

        let dnsPort = try #require(try await services.server.listeningAddresses().first?.port)
        let httpPort = try #require(try await metricsServer.listeningAddress().port)
        #expect(try await get("/health", port: httpPort).status == 200)
        #expect(try await get("/ready", port: httpPort).status == 200)
        #expect(try await get("/nowhere", port: httpPort).status == 404)

        for _ in 0..<3 {
            let reply = try await TestDNSClient.udp(
                try DNSMessage.query(name: "a.test.", type: .a, id: 5).encoded(),
                port: dnsPort,
                group: group
            )
            #expect(try DNSMessage(decoding: reply).header.responseCode == .noError)
        }
        _ = try await TestDNSClient.tcp(
            [try DNSMessage.query(name: "b.test.", type: .aaaa, id: 6).encoded()],
            port: dnsPort,
            group: group
        )
        let scrape = try await get("/metrics", port: httpPort)
        #expect(scrape.status == 200)
        let samples = try PrometheusText.parse(scrape.body)
        let upstreamLabel = "upstream=\"127.0.0.1:\(upstream.port)#dns.test\""
        #expect(samples["dotproxy_queries_total{transport=\"udp\",qtype=\"A\"}"] == 3)
        #expect(samples["dotproxy_queries_total{transport=\"tcp\",qtype=\"AAAA\"}"] == 1)
        #expect(samples["dotproxy_responses_total{rcode=\"NOERROR\"}"] == 4)
        #expect(samples["dotproxy_cache_hits_total"] == 2)
        #expect(samples["dotproxy_cache_misses_total"] == 2)
        // Timed: the one UDP miss (the two hits are immediate) and the TCP miss.
        #expect(samples["dotproxy_forwarded_request_duration_seconds_count{transport=\"udp\"}"] == 1)
        #expect(samples["dotproxy_forwarded_request_duration_seconds_count{transport=\"tcp\"}"] == 1)
        #expect(samples["dotproxy_upstream_queries_total{\(upstreamLabel)}"] == 2)
        #expect(samples["dotproxy_upstream_up{\(upstreamLabel)}"] == 1)
        #expect((samples["dotproxy_upstream_connections{\(upstreamLabel)}"] ?? 0) >= 1)
        #expect(samples["dotproxy_upstream_tls_handshakes_total{\(upstreamLabel),resumed=\"false\"}"] ?? 0 >= 1)
        #expect(samples["dotproxy_cache_entries"] ?? 0 >= 1)
        try PromTool.check(scrape.body)

        // The upstream goes away: the next miss fails, marks it down (max-fails 1), and /ready says so.
        try await upstream.stop()
        let failed = try await TestDNSClient.udp(
            try DNSMessage.query(name: "c.test.", type: .a, id: 7).encoded(),
            port: dnsPort,
            group: group
        )
        #expect(try DNSMessage(decoding: failed).header.responseCode == .serverFailure)
        let ready = try await get("/ready", port: httpPort)
        #expect(ready.status == 503 && ready.body.contains("no usable upstream"))
        let after = try PrometheusText.parse(try await get("/metrics", port: httpPort).body)
        #expect(after["dotproxy_upstream_up{\(upstreamLabel)}"] == 0)
        #expect(after["dotproxy_responses_total{rcode=\"SERVFAIL\"}"] == 1)
        #expect(after.keys.contains { $0.hasPrefix("dotproxy_upstream_errors_total{\(upstreamLabel),kind=") })

        await serviceGroup.triggerGracefulShutdown()
        try await running
    }

    @Test func theMetricsAddressIsValidated() throws {
        for bad in ["9153", "localhost:9153", "127.0.0.1:5053"] {
            #expect(throws: (any Error).self, "\(bad)") {
                _ = try DotProxyCommand.parse(["--upstream", "1.1.1.1", "--metrics-listen", bad])
            }
        }
        let off = try DotProxyCommand.parse(["--upstream", "1.1.1.1"]).makeConfiguration()
        let services = try ProxyBuilder.build(off, group: group, logger: .init(label: "test"))
        #expect(
            off.metricsListen == nil && services.metricsServer == nil && services.metricsFactory == nil
                && services.all.count == 2,
            "the pool and the DNS server"
        )
        services.pool.stopHealthChecks()
    }

    @Test func helpLinesPrecedeTypeLinesOfKnownMetrics() {
        let text = String(
            buffer: MetricsHTTPHandler.withHelp(
                "# TYPE dotproxy_cache_hits_total counter\ndotproxy_cache_hits_total 1\n# TYPE x gauge\nx 2\n"
            )
        )
        #expect(
            text
                == "# HELP dotproxy_cache_hits_total Cache lookups that found a fresh reply.\n# TYPE dotproxy_cache_hits_total counter\n"
                + "dotproxy_cache_hits_total 1\n# TYPE x gauge\nx 2\n"
        )
    }

    // MARK: Helpers

    /// One HTTP/1.0 GET on a fresh connection (the server closes it after the reply).
    func get(_ path: String, port: Int) async throws -> (status: Int, body: String) {
        let channel = try await ClientBootstrap(group: group).connect(host: "127.0.0.1", port: port) { channel in
            channel.eventLoop.makeCompletedFuture {
                try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
            }
        }
        var response = ByteBuffer()
        try await channel.executeThenClose { inbound, outbound in
            try await outbound.write(ByteBuffer(string: "GET \(path) HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"))
            for try await chunk in inbound { response.writeImmutableBuffer(chunk) }
        }
        let text = String(buffer: response)
        let parts = text.components(separatedBy: "\r\n\r\n")
        let statusLine = parts.first?.split(separator: "\r\n").first ?? ""
        let status = statusLine.split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? 0
        return (status, parts.dropFirst().joined(separator: "\r\n\r\n"))
    }
}

/// A strict reader of the Prometheus text format (0.0.4), enough to check what dotproxy emits.
enum PrometheusText {
    struct Malformed: Error, CustomStringConvertible {
        let line: String
        var description: String { "malformed exposition line: \(line)" }
    }

    /// The samples, keyed by `name{labels}` as written; throws on any line that is not a comment,
    /// a known `# TYPE`, or a sample with a numeric value.
    static func parse(_ text: String) throws -> [String: Double] {
        var samples: [String: Double] = [:]
        var typed: Set<String> = []
        let name = #/[a-zA-Z_:][a-zA-Z0-9_:]*/#
        let sample =
            #/([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[a-zA-Z_][a-zA-Z0-9_]*="[^"\\]*"(,[a-zA-Z_][a-zA-Z0-9_]*="[^"\\]*")*\})? ([-+]?[0-9.eE+-]+|\+Inf|NaN)/#
        for line in text.split(separator: "\n") {
            if line.hasPrefix("# TYPE ") {
                let fields = line.split(separator: " ")
                guard fields.count == 4, (try? name.wholeMatch(in: fields[2])) != nil,
                    ["counter", "gauge", "histogram", "summary", "untyped"].contains(fields[3])
                else { throw Malformed(line: String(line)) }
                guard typed.insert(String(fields[2])).inserted else { throw Malformed(line: "second TYPE: \(line)") }
            } else if line.hasPrefix("#") {
                continue
            } else {
                guard let match = try sample.wholeMatch(in: line), let value = Double(match.4) else {
                    throw Malformed(line: String(line))
                }
                let key = String(match.1) + String(match.2 ?? "")
                guard samples.updateValue(value, forKey: key) == nil else {
                    throw Malformed(line: "duplicate sample: \(line)")
                }
                let family = String(match.1).replacing(#/_(bucket|sum|count)$/#, with: "")
                guard typed.contains(String(match.1)) || typed.contains(family) else {
                    throw Malformed(line: "sample before its TYPE: \(line)")
                }
            }
        }
        return samples
    }
}

/// `promtool check metrics`; CI installs it (Debian `prometheus`), and a missing tool fails the test.
enum PromTool {
    struct Failed: Error, CustomStringConvertible {
        let description: String
    }

    static func check(_ exposition: String) throws {
        let path = ["/usr/bin/promtool", "/usr/local/bin/promtool"].first {
            FileManager.default.isExecutableFile(atPath: $0)
        }
        guard let path else { throw Failed(description: "promtool is not installed (apt-get install prometheus)") }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = ["check", "metrics"]
        let input = Pipe()
        let output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        process.standardError = output
        try process.run()
        input.fileHandleForWriting.write(Data(exposition.utf8))
        try input.fileHandleForWriting.close()
        let report = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw Failed(description: "promtool: exit \(process.terminationStatus): \(report)")
        }
    }
}
