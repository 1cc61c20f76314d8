import DoTCore
import NIOCore

/// The Redis key of a question, the same for every replica: the prefix, a format version, then what
/// the in-memory cache's ``DNSCacheKey`` hashes (the question name lower-cased, in presentation form,
/// its type and class, and the DO and CD bits), readably: `dotproxy:v1:example.com.:1:1:dc`.
///
/// The version changes whenever the key or the stored value changes form, so replicas of two
/// versions never read each other's entries.
enum RedisCacheKey {
    /// The version in every key.
    static let version = "v1"

    /// The key of `message`'s question (a query's, or the reply's: DO and CD are echoed in replies,
    /// RFC 3225 and RFC 4035 §3.2.2), or `nil` when it has none or its name does not read.
    static func make(prefix: String, for message: ParsedDNSMessage) -> [UInt8]? {
        let view = message.view
        guard view.questionCount == 1, let range = view.questionNameRange, let type = view.questionType,
            let klass = view.questionClass
        else { return nil }
        var key = Array(prefix.utf8) + Array("\(version):".utf8)
        let named: Bool = message.buffer.withUnsafeReadableBytes { bytes in
            guard range.upperBound <= bytes.count else { return false }
            var position = range.lowerBound
            while position < range.upperBound {
                let length = Int(bytes[position])
                guard length > 0 else { return true }
                // A compression pointer cannot occur in the first question; anything else is refused.
                guard length < 64, position + 1 + length <= range.upperBound else { return false }
                for byte in bytes[(position + 1)...(position + length)] { append(byte, to: &key) }
                key.append(UInt8(ascii: "."))
                position += 1 + length
            }
            return false
        }
        guard named else { return nil }
        if range.count == 1 { key.append(UInt8(ascii: ".")) }
        key += Array(":\(type.rawValue):\(klass.rawValue):".utf8)
        if view.dnssecOK { key.append(UInt8(ascii: "d")) }
        if view.checkingDisabled { key.append(UInt8(ascii: "c")) }
        return key
    }

    /// One octet of a label: ASCII letters lower-cased, `.` and `\` escaped, anything unprintable as
    /// `\DDD` (RFC 1035 §5.1), so no two names share a key.
    private static func append(_ byte: UInt8, to key: inout [UInt8]) {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"):
            key.append(byte | 0x20)
        case UInt8(ascii: "."), UInt8(ascii: "\\"):
            key += [UInt8(ascii: "\\"), byte]
        case 0x21...0x7E:
            key.append(byte)
        default:
            key.append(UInt8(ascii: "\\"))
            key += [byte / 100, byte / 10 % 10, byte % 10].map { UInt8(ascii: "0") + $0 }
        }
    }
}
