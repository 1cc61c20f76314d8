/// The protocol a client query arrived over, which decides the size limit and truncation of the reply
/// and the `transport` label it is counted under. ("Transport" in DoTCore names the upstream side:
/// ``UpstreamTransport``.)
public struct ClientProtocol: Hashable, Sendable, CustomStringConvertible {
    let isUDP: Bool
    /// The protocol's slot in per-protocol tables: 0 UDP, 1 TCP, 2 TLS.
    let index: Int
    public let description: String

    /// Plain DNS over UDP: replies are limited to the client's EDNS UDP size.
    public static let udp = ClientProtocol(isUDP: true, index: 0, description: "udp")
    /// Plain DNS over TCP: replies up to 65,535 octets.
    public static let tcp = ClientProtocol(isUDP: false, index: 1, description: "tcp")
    /// DNS over TLS (RFC 7858): framed as over TCP, replies up to 65,535 octets.
    public static let tls = ClientProtocol(isUDP: false, index: 2, description: "tls")

    /// Every protocol, in ``index`` order.
    static let all: [ClientProtocol] = [.udp, .tcp, .tls]
}
