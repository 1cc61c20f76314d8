import ArgumentParser
import DoTCore
import NIOCore
import NIOPosix

/// A tiny kdig: resolves one name over DNS over TLS with `DoTUpstreamTransport` alone, and prints the
/// answer in presentation format.
///
///     swift run resolve example.com AAAA --server 9.9.9.9
///     swift run resolve a.test --server 127.0.0.1:8853#dns.test --ca-file /tmp/rig/ca.pem
@main
struct Resolve: AsyncParsableCommand {
    @Argument(help: "The name to resolve.")
    var name: String

    @Argument(help: "The record type, such as A, AAAA, MX, TXT, HTTPS or TYPE65.")
    var type: String = "A"

    @Option(help: "The DoT server: IP, IP:PORT or [IPv6]:PORT, optionally #auth-name.")
    var server: String = "1.1.1.1#cloudflare-dns.com"

    @Option(help: "A PEM file of CAs to trust instead of the system store.")
    var caFile: String?

    @Option(help: "Seconds to wait for the answer.")
    var timeout: Int64 = 3

    func run() async throws {
        guard let recordType = DNSRecordType(name: type) else { throw ValidationError("unknown record type \(type)") }
        let question = try DNSName(parsing: name)
        let upstream = try Self.parseServer(server)
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

    /// `IP`, `IP:PORT`, `[IPv6]:PORT` or bare IPv6, each with an optional `#name`.
    static func parseServer(_ text: String) throws -> UpstreamAddress {
        let parts = text.split(separator: "#", maxSplits: 1).map(String.init)
        var host = parts[0]
        var port = 853
        if host.hasPrefix("["), let close = host.firstIndex(of: "]") {
            if let value = Int(host[host.index(after: close)...].dropFirst()) { port = value }
            host = String(host[host.index(after: host.startIndex)..<close])
        } else if host.filter({ $0 == ":" }).count == 1, let colon = host.firstIndex(of: ":"),
            let value = Int(host[host.index(after: colon)...])
        {
            port = value
            host = String(host[..<colon])
        }
        guard IPv4Address(host) != nil || IPv6Address(host) != nil else {
            throw ValidationError("--server: \(text) is not an address")
        }
        return UpstreamAddress(host: host, port: port, authenticationName: parts.count == 2 ? parts[1] : nil)
    }
}
