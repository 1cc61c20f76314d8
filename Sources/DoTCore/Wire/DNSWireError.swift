/// An error found while reading or writing DNS wire format.
///
/// The error names what went wrong (``code``), where it went wrong (``offset``, counted from the first
/// byte of the message) and a short human-readable ``detail``. It never carries the packet itself.
/// New codes can be added without breaking the API, because ``Code`` is an open struct.
public struct DNSWireError: Error, Hashable, Sendable, CustomStringConvertible {
    /// What kind of problem was found.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case truncatedHeader
            case unexpectedEnd
            case countsExceedMessage
            case labelTooLong
            case nameTooLong
            case badCompressionPointer
            case compressionHopLimit
            case reservedLabelType
            case rdataOverrun
            case rdataLengthMismatch
            case invalidRData
            case multipleOPT
            case invalidOPT
            case invalidOption
            case trailingBytes
            case invalidPresentation
            case messageTooLarge
            case responseCodeNeedsEDNS
        }

        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// The message is shorter than the 12-octet header.
        public static let truncatedHeader = Code(.truncatedHeader)
        /// A field runs past the end of the message.
        public static let unexpectedEnd = Code(.unexpectedEnd)
        /// The header counts promise more entries than the message holds.
        public static let countsExceedMessage = Code(.countsExceedMessage)
        /// A label is longer than 63 octets.
        public static let labelTooLong = Code(.labelTooLong)
        /// A name is longer than 255 octets in wire form.
        public static let nameTooLong = Code(.nameTooLong)
        /// A compression pointer does not point strictly backwards (a self, forward or looping pointer).
        public static let badCompressionPointer = Code(.badCompressionPointer)
        /// A name follows more compression pointers than any valid name needs.
        public static let compressionHopLimit = Code(.compressionHopLimit)
        /// A label uses the reserved label types 0x40 or 0x80.
        public static let reservedLabelType = Code(.reservedLabelType)
        /// RDLENGTH runs past the end of the message.
        public static let rdataOverrun = Code(.rdataOverrun)
        /// The typed RDATA did not consume exactly RDLENGTH octets.
        public static let rdataLengthMismatch = Code(.rdataLengthMismatch)
        /// The RDATA of a known type is malformed.
        public static let invalidRData = Code(.invalidRData)
        /// The message holds more than one OPT record (RFC 6891 §6.1.1: FORMERR).
        public static let multipleOPT = Code(.multipleOPT)
        /// An OPT record outside the additional section, or with a name other than the root.
        public static let invalidOPT = Code(.invalidOPT)
        /// A known EDNS option has a malformed payload.
        public static let invalidOption = Code(.invalidOption)
        /// Bytes follow the last record the header counts.
        public static let trailingBytes = Code(.trailingBytes)
        /// A name or value in presentation format cannot be parsed.
        public static let invalidPresentation = Code(.invalidPresentation)
        /// An encoded message would exceed 65,535 octets.
        public static let messageTooLarge = Code(.messageTooLarge)
        /// A response code above 15 needs an OPT record to carry its upper bits.
        public static let responseCodeNeedsEDNS = Code(.responseCodeNeedsEDNS)

        public var description: String { base.rawValue }
    }

    /// What kind of problem was found.
    public var code: Code
    /// The byte offset from the start of the message where the problem was found, if it has one.
    public var offset: Int?
    /// A short explanation, without packet contents.
    public var detail: String

    /// Creates an error.
    ///
    /// - Parameters:
    ///   - code: What kind of problem was found.
    ///   - offset: The offset from the start of the message, if the problem has one.
    ///   - detail: A short explanation.
    public init(_ code: Code, offset: Int? = nil, detail: String = "") {
        self.code = code
        self.offset = offset
        self.detail = detail
    }

    public var description: String {
        var text = "DNSWireError.\(code)"
        if let offset { text += " at offset \(offset)" }
        if !detail.isEmpty { text += ": \(detail)" }
        return text
    }
}
