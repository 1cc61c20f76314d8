import NIOCore

/// Where an upstream DoT resolver is and which name its certificate must carry.
public struct UpstreamAddress: Hashable, Sendable, CustomStringConvertible {
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
