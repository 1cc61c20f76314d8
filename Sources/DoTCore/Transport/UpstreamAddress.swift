import NIOCore

/// Where an upstream DoT resolver is and which name its certificate must carry.
public struct UpstreamAddress: Hashable, Sendable, LosslessStringConvertible {
    /// The resolver's IP address, as text.
    public var host: String
    /// The TCP port; 853 for DNS over TLS.
    public var port: Int
    /// The name to verify the certificate against and send as SNI (RFC 8310 §8). Without one, the
    /// certificate must name the IP address.
    public var authenticationName: String?

    /// Creates an upstream address.
    ///
    /// - Parameters:
    ///   - host: An IPv4 or IPv6 address literal.
    ///   - port: The port; 853 by default.
    ///   - authenticationName: The name the certificate must carry, if not the address.
    public init(host: String, port: Int = 853, authenticationName: String? = nil) {
        self.host = host
        self.port = port
        self.authenticationName = authenticationName
    }

    /// Parses the notation ``description`` writes: `IP`, `IP:PORT`, `[IPv6]:PORT` or a bare IPv6
    /// address, each optionally followed by `#name`, the authentication name. The port is 853 unless
    /// given; IPv6 addresses are kept in their canonical form.
    ///
    /// - Parameter text: For example `9.9.9.9#dns.quad9.net` or `[2620:fe::fe]:853`.
    public init?(_ text: String) {
        var rest = Substring(text)
        var name: String?
        if let hash = rest.firstIndex(of: "#") {
            let given = String(rest[rest.index(after: hash)...])
            guard !given.isEmpty, (try? DNSName(parsing: given)) != nil else { return nil }
            name = given
            rest = rest[..<hash]
        }
        var host: String
        var port = 853
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else { return nil }
            host = String(rest[rest.index(after: rest.startIndex)..<close])
            let after = rest[rest.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":"), let value = Int(after.dropFirst()), (1...65535).contains(value) else {
                    return nil
                }
                port = value
            }
            guard IPv6Address(host) != nil else { return nil }
        } else if rest.filter({ $0 == ":" }).count == 1 {
            let parts = rest.split(separator: ":", omittingEmptySubsequences: false)
            guard let value = Int(parts[1]), (1...65535).contains(value) else { return nil }
            host = String(parts[0])
            port = value
            guard IPv4Address(host) != nil else { return nil }
        } else {
            host = String(rest)
            guard IPv4Address(host) != nil || IPv6Address(host) != nil else { return nil }
        }
        if let v6 = IPv6Address(host) { host = v6.description }
        self.init(host: host, port: port, authenticationName: name)
    }

    /// The name the certificate is verified against.
    public var verificationName: String { authenticationName ?? host }

    /// The socket address to connect to.
    ///
    /// - Throws: NIO's error when ``host`` is not an IP address literal.
    public func socketAddress() throws -> SocketAddress {
        try SocketAddress(ipAddress: host, port: port)
    }

    public var description: String {
        let address = host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        return authenticationName.map { "\(address)#\($0)" } ?? address
    }
}
