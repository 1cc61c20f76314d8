/// A fully qualified domain name.
///
/// The name is stored in uncompressed wire form (length-prefixed labels ending in the root label), so
/// writing it is a copy. Equality and hashing ignore ASCII case (RFC 4343), while the original case is
/// kept for printing and writing, so that a client's 0x20-randomised question is answered as asked.
public struct DNSName: Hashable, Sendable, CustomStringConvertible, ExpressibleByStringLiteral {
    /// The most octets a name may take in wire form, root label included (RFC 1035 §3.1).
    public static let maximumWireLength = 255
    /// The most octets one label may hold (RFC 1035 §2.3.4).
    public static let maximumLabelLength = 63

    /// The uncompressed wire form, ending with the zero-length root label.
    public private(set) var wireBytes: [UInt8]

    /// The root name, `.`.
    public static let root = DNSName(uncheckedWireBytes: [0])

    init(uncheckedWireBytes: [UInt8]) { self.wireBytes = uncheckedWireBytes }

    /// Creates a name from its labels, most specific first (`["www", "example", "com"]`).
    ///
    /// - Throws: ``DNSWireError/Code/labelTooLong`` or ``DNSWireError/Code/nameTooLong`` when a bound is
    ///   exceeded, or ``DNSWireError/Code/invalidPresentation`` for an empty label.
    public init<Labels: Sequence>(labels: Labels) throws(DNSWireError) where Labels.Element == [UInt8] {
        var bytes: [UInt8] = []
        for label in labels {
            guard !label.isEmpty else { throw DNSWireError(.invalidPresentation, detail: "empty label") }
            guard label.count <= Self.maximumLabelLength else {
                throw DNSWireError(.labelTooLong, detail: "label of \(label.count) octets")
            }
            bytes.append(UInt8(label.count))
            bytes.append(contentsOf: label)
        }
        bytes.append(0)
        guard bytes.count <= Self.maximumWireLength else {
            throw DNSWireError(.nameTooLong, detail: "name of \(bytes.count) octets")
        }
        self.wireBytes = bytes
    }

    /// Parses a name in presentation format, such as `www.example.com.`.
    ///
    /// A trailing dot is optional: every name is taken as fully qualified. `\.` and `\\` escape a
    /// character and `\DDD` gives an octet in decimal (RFC 1035 §5.1). `.` alone is the root.
    ///
    /// - Throws: ``DNSWireError`` with ``DNSWireError/Code/invalidPresentation`` for a malformed escape
    ///   or an empty label, or a length code when a bound is exceeded.
    public init(parsing text: String) throws(DNSWireError) {
        if text == "." || text.isEmpty {
            self = .root
            return
        }
        var labels: [[UInt8]] = []
        var current: [UInt8] = []
        var utf8 = Array(text.utf8)[...]
        var sawDotLast = false
        while let byte = utf8.popFirst() {
            sawDotLast = false
            switch byte {
            case UInt8(ascii: "."):
                guard !current.isEmpty else {
                    throw DNSWireError(.invalidPresentation, detail: "empty label in \"\(text)\"")
                }
                labels.append(current)
                current = []
                sawDotLast = true
            case UInt8(ascii: "\\"):
                guard let next = utf8.popFirst() else {
                    throw DNSWireError(.invalidPresentation, detail: "dangling escape in \"\(text)\"")
                }
                if Self.isDigit(next) {
                    guard let d2 = utf8.popFirst(), let d3 = utf8.popFirst(), Self.isDigit(d2), Self.isDigit(d3)
                    else { throw DNSWireError(.invalidPresentation, detail: "\\DDD needs three digits") }
                    let value = Int(next - 48) * 100 + Int(d2 - 48) * 10 + Int(d3 - 48)
                    guard value <= 255 else {
                        throw DNSWireError(.invalidPresentation, detail: "\\\(value) is above 255")
                    }
                    current.append(UInt8(value))
                } else {
                    current.append(next)
                }
            default:
                current.append(byte)
            }
        }
        if !current.isEmpty {
            labels.append(current)
        } else if !sawDotLast {
            throw DNSWireError(.invalidPresentation, detail: "empty name")
        }
        try self.init(labels: labels)
    }

    /// Creates a name from a string literal; the literal must be a valid name.
    public init(stringLiteral value: String) {
        do {
            try self.init(parsing: value)
        } catch {
            preconditionFailure("invalid DNS name literal \"\(value)\": \(error)")
        }
    }

    private static func isDigit(_ byte: UInt8) -> Bool { byte >= 48 && byte <= 57 }

    /// The labels, most specific first, without the root label.
    public var labels: [ArraySlice<UInt8>] {
        var result: [ArraySlice<UInt8>] = []
        var index = 0
        while wireBytes[index] != 0 {
            let length = Int(wireBytes[index])
            result.append(wireBytes[(index + 1)..<(index + 1 + length)])
            index += 1 + length
        }
        return result
    }

    /// The number of labels, not counting the root.
    public var labelCount: Int {
        var count = 0
        var index = 0
        while wireBytes[index] != 0 {
            count += 1
            index += 1 + Int(wireBytes[index])
        }
        return count
    }

    /// Whether this is the root name.
    public var isRoot: Bool { wireBytes.count == 1 }

    /// The name with ASCII letters in lower case.
    public func lowercased() -> DNSName {
        DNSName(uncheckedWireBytes: wireBytes.map(Self.lowercase))
    }

    /// Whether this name equals `other` or lies below it.
    public func isSubdomain(of other: DNSName) -> Bool {
        guard other.wireBytes.count <= wireBytes.count else { return false }
        // Walk label boundaries until the remaining suffix is as long as `other`.
        var index = 0
        while wireBytes.count - index > other.wireBytes.count {
            index += 1 + Int(wireBytes[index])
        }
        guard wireBytes.count - index == other.wireBytes.count else { return false }
        return wireBytes.withUnsafeBytes { bytes in
            other.wireBytes.withUnsafeBytes {
                Self.equalIgnoringCase(UnsafeRawBufferPointer(rebasing: bytes[index...]), $0)
            }
        }
    }

    /// The name in presentation format, with a trailing dot and RFC 1035 escapes.
    public var description: String {
        if isRoot { return "." }
        var text = ""
        text.reserveCapacity(wireBytes.count + 1)
        for label in labels {
            for byte in label {
                switch byte {
                case UInt8(ascii: "."), UInt8(ascii: "\\"), UInt8(ascii: "\""), UInt8(ascii: "("),
                    UInt8(ascii: ")"), UInt8(ascii: ";"), UInt8(ascii: "@"), UInt8(ascii: "$"),
                    UInt8(ascii: " "):
                    text.append("\\")
                    text.unicodeScalars.append(Unicode.Scalar(byte))
                case 0x21...0x7E:
                    text.unicodeScalars.append(Unicode.Scalar(byte))
                default:
                    text.append("\\")
                    let digits = String(byte)
                    text.append(String(repeating: "0", count: 3 - digits.count) + digits)
                }
            }
            text.append(".")
        }
        return text
    }

    public static func == (lhs: DNSName, rhs: DNSName) -> Bool {
        lhs.wireBytes.withUnsafeBytes { left in rhs.wireBytes.withUnsafeBytes { equalIgnoringCase(left, $0) } }
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(wireBytes.count)
        for byte in wireBytes { hasher.combine(Self.lowercase(byte)) }
    }

    @inline(__always)
    static func lowercase(_ byte: UInt8) -> UInt8 {
        (byte >= 0x41 && byte <= 0x5A) ? byte | 0x20 : byte
    }

    /// Whether two runs of name octets are equal, ASCII case ignored: two names, a reply's question
    /// against its query's, a query's against a cache entry's. A plain loop over raw octets (a generic
    /// `zip` over collections cost about 15 instructions an octet).
    static func equalIgnoringCase(_ lhs: UnsafeRawBufferPointer, _ rhs: UnsafeRawBufferPointer) -> Bool {
        guard lhs.count == rhs.count else { return false }
        var index = 0
        while index < lhs.count {
            let left = lhs[index]
            let right = rhs[index]
            if left != right && lowercase(left) != lowercase(right) { return false }
            index += 1
        }
        return true
    }
}
