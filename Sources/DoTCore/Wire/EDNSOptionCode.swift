/// An EDNS(0) option code (RFC 6891 §6.1.2 and the IANA registry).
///
/// An open set: options this library does not know are kept as bytes and written back unchanged.
public struct EDNSOptionCode: RawRepresentable, Hashable, Sendable, ExpressibleByIntegerLiteral,
    CustomStringConvertible
{
    /// The 16-bit option code.
    public var rawValue: UInt16

    /// Creates an option code.
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// Creates an option code from an integer literal.
    public init(integerLiteral value: UInt16) { self.rawValue = value }

    /// Client subnet (RFC 7871).
    public static let clientSubnet: EDNSOptionCode = 8
    /// DNS cookie (RFC 7873).
    public static let cookie: EDNSOptionCode = 10
    /// TCP keepalive (RFC 7828).
    public static let tcpKeepalive: EDNSOptionCode = 11
    /// Padding (RFC 7830).
    public static let padding: EDNSOptionCode = 12
    /// Extended DNS error (RFC 8914).
    public static let extendedError: EDNSOptionCode = 15

    private static let names: [UInt16: String] = [
        8: "ECS", 10: "COOKIE", 11: "KEEPALIVE", 12: "PADDING", 15: "EDE",
    ]

    /// The mnemonic, or `nil` for an option this library has no name for.
    public var name: String? { Self.names[rawValue] }

    public var description: String { name ?? "OPT\(rawValue)" }
}
