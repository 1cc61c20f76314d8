/// A DNS class (RFC 1035 §3.2.4).
///
/// An open set: any 16-bit value round-trips. Unknown classes print as `CLASS12` (RFC 3597 §5).
public struct DNSClass: RawRepresentable, Hashable, Sendable, ExpressibleByIntegerLiteral, CustomStringConvertible {
    /// The 16-bit class code.
    public var rawValue: UInt16

    /// Creates a class from its 16-bit code.
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// Creates a class from an integer literal.
    public init(integerLiteral value: UInt16) { self.rawValue = value }

    public static let internet: DNSClass = 1
    public static let chaos: DNSClass = 3
    public static let hesiod: DNSClass = 4
    public static let none: DNSClass = 254
    public static let any: DNSClass = 255

    private static let names: [UInt16: String] = [1: "IN", 3: "CH", 4: "HS", 254: "NONE", 255: "ANY"]

    /// The mnemonic, such as `IN`, or `nil` for an unnamed class.
    public var name: String? { Self.names[rawValue] }

    public var description: String { name ?? "CLASS\(rawValue)" }

    /// Parses a mnemonic (`IN`, `CH`) or an RFC 3597 `CLASSnnn` form, ignoring case.
    public init?(name: String) {
        let upper = name.uppercased()
        if let match = Self.names.first(where: { $0.value == upper }) {
            self.init(rawValue: match.key)
        } else if upper.hasPrefix("CLASS"), let value = UInt16(upper.dropFirst(5)) {
            self.init(rawValue: value)
        } else {
            return nil
        }
    }
}
