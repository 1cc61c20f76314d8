/// The data of a resource record.
///
/// The common types are decoded into typed values. Any other type, or a type whose typed form is not
/// needed, is kept as ``opaque(_:)`` bytes and written back exactly as read (RFC 3597). Names inside
/// RDATA are compressed on output only for the RFC 1035 types (see
/// ``DNSRecordType/allowsRDataCompression``).
public enum DNSRData: Hashable, Sendable, CustomStringConvertible {
    /// An IPv4 address (type A).
    case a(IPv4Address)
    /// An IPv6 address (type AAAA).
    case aaaa(IPv6Address)
    /// An authoritative name server (type NS).
    case ns(DNSName)
    /// The canonical name of an alias (type CNAME).
    case cname(DNSName)
    /// A domain name pointer (type PTR).
    case ptr(DNSName)
    /// A mail exchange (type MX).
    case mx(preference: UInt16, exchange: DNSName)
    /// One or more character strings of up to 255 octets each (type TXT).
    case txt([[UInt8]])
    /// The start of a zone of authority (type SOA).
    case soa(SOA)
    /// A service location (type SRV, RFC 2782).
    case srv(SRV)
    /// A certification authority authorization (type CAA, RFC 8659).
    case caa(CAA)
    /// A service binding (type SVCB, RFC 9460).
    case svcb(ServiceBinding)
    /// An HTTPS service binding (type HTTPS, RFC 9460).
    case https(ServiceBinding)
    /// RDATA kept as bytes, for any other type.
    case opaque([UInt8])

    /// The record type that typed data belongs to, or `nil` for opaque data.
    public var impliedType: DNSRecordType? {
        switch self {
        case .a: .a
        case .aaaa: .aaaa
        case .ns: .ns
        case .cname: .cname
        case .ptr: .ptr
        case .mx: .mx
        case .txt: .txt
        case .soa: .soa
        case .srv: .srv
        case .caa: .caa
        case .svcb: .svcb
        case .https: .https
        case .opaque: nil
        }
    }

    public var description: String {
        switch self {
        case .a(let address): "\(address)"
        case .aaaa(let address): "\(address)"
        case .ns(let name), .cname(let name), .ptr(let name): "\(name)"
        case .mx(let preference, let exchange): "\(preference) \(exchange)"
        case .txt(let strings): strings.map(Self.quoted).joined(separator: " ")
        case .soa(let soa): "\(soa)"
        case .srv(let srv): "\(srv)"
        case .caa(let caa): "\(caa)"
        case .svcb(let binding), .https(let binding): "\(binding)"
        case .opaque(let bytes): "\\# \(bytes.count)" + (bytes.isEmpty ? "" : " " + Self.hex(bytes))
        }
    }

    static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2)
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func quoted(_ bytes: [UInt8]) -> String {
        var text = "\""
        for byte in bytes {
            switch byte {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"):
                text.append("\\")
                text.unicodeScalars.append(Unicode.Scalar(byte))
            case 0x20...0x7E:
                text.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                let digits = String(byte)
                text.append("\\" + String(repeating: "0", count: 3 - digits.count) + digits)
            }
        }
        return text + "\""
    }
}
