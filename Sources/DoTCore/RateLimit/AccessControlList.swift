/// The client networks allowed to query the proxy.
///
/// The default allows what dnsdist allows by default: loopback, RFC 1918, link-local, CGNAT
/// (100.64.0.0/10) and IPv6 unique-local and link-local. Everyone else is refused, so a proxy bound to
/// a public address by mistake is not an open resolver.
public struct AccessControlList: Hashable, Sendable, CustomStringConvertible {
    /// The allowed networks.
    public var allowed: [IPNetwork]

    /// An access list allowing exactly `allowed`.
    public init(allowed: [IPNetwork]) { self.allowed = allowed }

    /// Loopback, private, link-local, CGNAT and unique-local networks.
    public static let `default` = AccessControlList(
        allowed: [.loopbackIPv4, .loopbackIPv6]
            + [
                "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10", "fc00::/7",
                "fe80::/10",
            ].map { IPNetwork($0)! }
    )

    /// What a client outside the list gets.
    public enum DeniedAction: Hashable, Sendable {
        /// REFUSED: a legitimate client learns at once that it is not served.
        case refuse
        /// Nothing: a scanner learns nothing, and a spoofed source draws no reply.
        case drop
    }

    /// Everyone: an open resolver. Only when asked for explicitly.
    public static let everyone = AccessControlList(allowed: [.anyIPv4, .anyIPv6])

    /// Whether the list admits everyone of either address family (and so makes an open resolver).
    public var isOpen: Bool { allowed.contains(where: \.isEverything) }

    /// Whether `client` may query.
    @inline(__always)
    public func allows(_ client: ClientAddress) -> Bool {
        for network in allowed where network.contains(client) { return true }
        return false
    }

    public var description: String { allowed.map(\.description).joined(separator: ",") }
}
