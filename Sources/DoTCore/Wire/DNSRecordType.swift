/// A DNS resource record type (RFC 1035 §3.2.2 and the IANA registry).
///
/// This is an open set: any 16-bit value is a valid type, and a type this library does not know is
/// still parsed, kept and written back unchanged. Unknown types print in RFC 3597 form, `TYPE65280`.
public struct DNSRecordType: RawRepresentable, Hashable, Sendable, Comparable, ExpressibleByIntegerLiteral,
    CustomStringConvertible
{
    /// The 16-bit type code.
    public var rawValue: UInt16

    /// Creates a type from its 16-bit code.
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// Creates a type from an integer literal.
    public init(integerLiteral value: UInt16) { self.rawValue = value }

    public static let a: DNSRecordType = 1
    public static let ns: DNSRecordType = 2
    public static let cname: DNSRecordType = 5
    public static let soa: DNSRecordType = 6
    public static let ptr: DNSRecordType = 12
    public static let hinfo: DNSRecordType = 13
    public static let mx: DNSRecordType = 15
    public static let txt: DNSRecordType = 16
    public static let aaaa: DNSRecordType = 28
    public static let srv: DNSRecordType = 33
    public static let naptr: DNSRecordType = 35
    public static let dname: DNSRecordType = 39
    public static let opt: DNSRecordType = 41
    public static let ds: DNSRecordType = 43
    public static let rrsig: DNSRecordType = 46
    public static let nsec: DNSRecordType = 47
    public static let dnskey: DNSRecordType = 48
    public static let nsec3: DNSRecordType = 50
    public static let tlsa: DNSRecordType = 52
    public static let svcb: DNSRecordType = 64
    public static let https: DNSRecordType = 65
    public static let ixfr: DNSRecordType = 251
    public static let axfr: DNSRecordType = 252
    public static let any: DNSRecordType = 255
    public static let caa: DNSRecordType = 257

    private static let names: [UInt16: String] = [
        1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 13: "HINFO", 15: "MX", 16: "TXT", 28: "AAAA",
        33: "SRV", 35: "NAPTR", 39: "DNAME", 41: "OPT", 43: "DS", 46: "RRSIG", 47: "NSEC", 48: "DNSKEY",
        50: "NSEC3", 52: "TLSA", 64: "SVCB", 65: "HTTPS", 251: "IXFR", 252: "AXFR", 255: "ANY", 257: "CAA",
    ]

    /// The mnemonic, such as `AAAA`, or `nil` for a type this library has no name for.
    public var name: String? { Self.names[rawValue] }

    /// The mnemonic, or `TYPE` followed by the number (RFC 3597 §5).
    public var description: String { name ?? "TYPE\(rawValue)" }

    /// Parses a mnemonic (`aaaa`, `HTTPS`) or an RFC 3597 `TYPEnnn` form, ignoring case.
    public init?(name: String) {
        let upper = name.uppercased()
        if let match = Self.names.first(where: { $0.value == upper }) {
            self.init(rawValue: match.key)
        } else if upper.hasPrefix("TYPE"), let value = UInt16(upper.dropFirst(4)) {
            self.init(rawValue: value)
        } else {
            return nil
        }
    }

    /// Whether names inside this type's RDATA may be compressed when written (RFC 3597 §4).
    ///
    /// Only the well-known types of RFC 1035 qualify; every later type is written uncompressed.
    public var allowsRDataCompression: Bool {
        switch self {
        case .ns, .cname, .soa, .ptr, .mx: true
        default: false
        }
    }

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }
}
