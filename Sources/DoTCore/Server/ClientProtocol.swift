/// The protocol a client query arrived over (UDP or TCP), which decides the size limit and truncation
/// of the reply. ("Transport" in DoTCore names the upstream side: ``UpstreamTransport``.)
public struct ClientProtocol: Hashable, Sendable, CustomStringConvertible {
    let isUDP: Bool
    public let description: String

    /// Plain DNS over UDP: replies are limited to the client's EDNS UDP size.
    public static let udp = ClientProtocol(isUDP: true, description: "udp")
    /// Plain DNS over TCP: replies up to 65,535 octets.
    public static let tcp = ClientProtocol(isUDP: false, description: "tcp")
}
