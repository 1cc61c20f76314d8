import ArgumentParser
import DoTCore
import NIOCore
import NIOPosix

/// A tiny kdig: resolves one name over DNS over TLS with `DoTUpstreamTransport` alone, and prints the
/// answer in presentation format.
///
///     swift run resolve example.com AAAA --upstream 9.9.9.9#dns.quad9.net
///     swift run resolve a.test --upstream 127.0.0.1:8853#dns.test --ca-file /tmp/rig/ca.pem
@main
struct Resolve: AsyncParsableCommand {
    @Argument(help: "The name to resolve.")
    var name: String

    @Argument(help: "The record type, such as A, AAAA, MX, TXT, HTTPS or TYPE65.")
    var type: String = "A"

    @Option(help: "The DoT resolver: IP, IP:PORT or [IPv6]:PORT, optionally #auth-name.")
    var upstream: String = "1.1.1.1#cloudflare-dns.com"

    @Option(help: "A PEM file of CAs to trust instead of the system store.")
    var caFile: String?

    @Option(help: "Seconds to wait for the answer.")
    var timeout: Int64 = 3

    func run() async throws {
        guard let recordType = DNSRecordType(name: type) else { throw ValidationError("unknown record type \(type)") }
        let question = try DNSName(parsing: name)
        guard let upstream = UpstreamAddress(self.upstream) else {
            throw ValidationError(
                "--upstream: \(self.upstream) is not IP, IP:PORT or [IPv6]:PORT with an optional #name"
            )
        }
        var tls = TLSClientConfiguration.makeStrict()
        if let caFile { tls.trustRoots = .pemFile(caFile) }
        let transport = DoTUpstreamTransport(
            configuration: .init(upstream: upstream),
            tlsContext: try TLSClientContext(configuration: tls)
        )
        defer { Task { await transport.shutdown() } }
        let query = DNSMessage.query(name: question, type: recordType, id: .random(in: .min ... .max))
        let started = NIODeadline.now()
        let reply = try DNSMessage(
            decoding: await transport.send(
                query.encoded(),
                timeout: .seconds(timeout),
                on: MultiThreadedEventLoopGroup.singleton.next()
            )
        )
        let elapsed = Double((NIODeadline.now() - started).nanoseconds) / 1e6
        print(";; \(reply.header.responseCode) from \(upstream) over TLS in \(Int(elapsed.rounded())) ms")
        for (title, records) in [("ANSWER", reply.answers), ("AUTHORITY", reply.authorities)] where !records.isEmpty {
            print(";; \(title)")
            for record in records { print(record) }
        }
        await transport.shutdown()
    }
}
