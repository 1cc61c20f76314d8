/// How a query reached the proxy, which decides the size limit and truncation of the reply.
public struct DNSClientTransport: Hashable, Sendable, CustomStringConvertible {
    let isUDP: Bool
    public let description: String

    /// Plain DNS over UDP: replies are limited to the client's EDNS UDP size.
    public static let udp = DNSClientTransport(isUDP: true, description: "udp")
    /// Plain DNS over TCP: replies up to 65,535 octets.
    public static let tcp = DNSClientTransport(isUDP: false, description: "tcp")
}
