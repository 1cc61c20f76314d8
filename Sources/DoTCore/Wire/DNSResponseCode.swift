/// A DNS response code (RFC 1035 §4.1.1, RFC 6891 §6.1.3).
///
/// Twelve bits: the low four travel in the header, the upper eight in the OPT record's extended RCODE
/// field. ``DNSMessage`` joins and splits them. Values without a name still round-trip.
public struct DNSResponseCode: RawRepresentable, Hashable, Sendable, ExpressibleByIntegerLiteral,
    CustomStringConvertible
{
    /// The 12-bit response code.
    public let rawValue: UInt16

    /// Creates a response code, or returns `nil` when the value does not fit in twelve bits.
    public init?(rawValue: UInt16) {
        guard rawValue < 4096 else { return nil }
        self.rawValue = rawValue
    }

    init(truncating value: UInt16) { self.rawValue = value & 0x0FFF }

    /// Creates a response code from an integer literal; the literal must be below 4096.
    public init(integerLiteral value: UInt16) {
        precondition(value < 4096, "a DNS response code has twelve bits")
        self.rawValue = value
    }

    public static let noError: DNSResponseCode = 0
    public static let formatError: DNSResponseCode = 1
    public static let serverFailure: DNSResponseCode = 2
    public static let nameError: DNSResponseCode = 3
    public static let notImplemented: DNSResponseCode = 4
    public static let refused: DNSResponseCode = 5
    public static let yxDomain: DNSResponseCode = 6
    public static let yxRRSet: DNSResponseCode = 7
    public static let nxRRSet: DNSResponseCode = 8
    public static let notAuth: DNSResponseCode = 9
    public static let notZone: DNSResponseCode = 10
    public static let badVersion: DNSResponseCode = 16
    public static let badCookie: DNSResponseCode = 23

    private static let names: [UInt16: String] = [
        0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED", 6: "YXDOMAIN",
        7: "YXRRSET", 8: "NXRRSET", 9: "NOTAUTH", 10: "NOTZONE", 16: "BADVERS", 23: "BADCOOKIE",
    ]

    /// The mnemonic, such as `NXDOMAIN`, or `nil` for an unassigned value.
    public var name: String? { Self.names[rawValue] }

    public var description: String { name ?? "RCODE\(rawValue)" }

    /// The low four bits, carried in the header.
    public var headerBits: UInt16 { rawValue & 0x000F }

    /// The upper eight bits, carried in the OPT record.
    public var extendedBits: UInt8 { UInt8(truncatingIfNeeded: rawValue >> 4) }
}
