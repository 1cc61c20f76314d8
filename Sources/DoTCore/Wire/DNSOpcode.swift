/// A DNS opcode: the kind of query in the header (RFC 1035 §4.1.1, RFC 6895).
///
/// Four bits on the wire. Values without a name still round-trip.
public struct DNSOpcode: RawRepresentable, Hashable, Sendable, ExpressibleByIntegerLiteral, CustomStringConvertible {
    /// The opcode, 0 to 15.
    public let rawValue: UInt8

    /// Creates an opcode, or returns `nil` when the value does not fit in four bits.
    public init?(rawValue: UInt8) {
        guard rawValue < 16 else { return nil }
        self.rawValue = rawValue
    }

    /// Creates an opcode from the low four bits of `value`.
    init(truncating value: UInt8) { self.rawValue = value & 0x0F }

    /// Creates an opcode from an integer literal; the literal must be below 16.
    public init(integerLiteral value: UInt8) {
        precondition(value < 16, "a DNS opcode has four bits")
        self.rawValue = value
    }

    public static let query: DNSOpcode = 0
    public static let inverseQuery: DNSOpcode = 1
    public static let status: DNSOpcode = 2
    public static let notify: DNSOpcode = 4
    public static let update: DNSOpcode = 5
    public static let dso: DNSOpcode = 6

    private static let names: [UInt8: String] = [
        0: "QUERY", 1: "IQUERY", 2: "STATUS", 4: "NOTIFY", 5: "UPDATE", 6: "DSO",
    ]

    /// The mnemonic, such as `QUERY`, or `nil` for an unassigned value.
    public var name: String? { Self.names[rawValue] }

    public var description: String { name ?? "OPCODE\(rawValue)" }
}
