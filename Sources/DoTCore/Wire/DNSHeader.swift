/// The fixed part of a DNS message: the ID, the flags, the opcode and the response code.
///
/// The section counts are not stored here: ``DNSMessage`` derives them from its sections, and
/// ``DNSMessageView`` reads them from the wire. ``responseCode`` holds all twelve bits; when a message
/// is decoded, the upper eight come from the OPT record (RFC 6891 §6.1.3).
public struct DNSHeader: Hashable, Sendable {
    /// The size of the header on the wire.
    public static let wireLength = 12

    /// The message ID that pairs a response with its query.
    public var id: UInt16
    /// QR: set in a response, clear in a query.
    public var isResponse: Bool
    /// The kind of query.
    public var opcode: DNSOpcode
    /// AA: the answer comes from an authoritative server.
    public var isAuthoritativeAnswer: Bool
    /// TC: the message was truncated to fit the transport.
    public var isTruncated: Bool
    /// RD: the client asks for recursion.
    public var recursionDesired: Bool
    /// RA: the server offers recursion.
    public var recursionAvailable: Bool
    /// Z: the reserved bit, which must be zero but is kept as read.
    public var reservedBit: Bool
    /// AD: the data was authenticated with DNSSEC (RFC 4035 §3.2.3).
    public var authenticData: Bool
    /// CD: the client disables DNSSEC checking (RFC 4035 §3.2.2).
    public var checkingDisabled: Bool
    /// The full response code, header and extended bits together.
    public var responseCode: DNSResponseCode

    /// Creates a header.
    ///
    /// - Parameters:
    ///   - id: The message ID.
    ///   - isResponse: QR.
    ///   - opcode: The kind of query; a standard query by default.
    ///   - isAuthoritativeAnswer: AA.
    ///   - isTruncated: TC.
    ///   - recursionDesired: RD; set by default, as a stub resolver sends it.
    ///   - recursionAvailable: RA.
    ///   - reservedBit: Z, which should stay clear.
    ///   - authenticData: AD.
    ///   - checkingDisabled: CD.
    ///   - responseCode: The response code, all twelve bits.
    public init(
        id: UInt16 = 0,
        isResponse: Bool = false,
        opcode: DNSOpcode = .query,
        isAuthoritativeAnswer: Bool = false,
        isTruncated: Bool = false,
        recursionDesired: Bool = true,
        recursionAvailable: Bool = false,
        reservedBit: Bool = false,
        authenticData: Bool = false,
        checkingDisabled: Bool = false,
        responseCode: DNSResponseCode = .noError
    ) {
        self.id = id
        self.isResponse = isResponse
        self.opcode = opcode
        self.isAuthoritativeAnswer = isAuthoritativeAnswer
        self.isTruncated = isTruncated
        self.recursionDesired = recursionDesired
        self.recursionAvailable = recursionAvailable
        self.reservedBit = reservedBit
        self.authenticData = authenticData
        self.checkingDisabled = checkingDisabled
        self.responseCode = responseCode
    }

    /// Creates a header from the ID and the 16-bit flags word as they appear on the wire.
    ///
    /// Only the four header bits of the response code are known from the flags alone.
    public init(id: UInt16, flags: UInt16) {
        self.init(
            id: id,
            isResponse: flags & Flag.qr != 0,
            opcode: DNSOpcode(truncating: UInt8(truncatingIfNeeded: flags >> 11)),
            isAuthoritativeAnswer: flags & Flag.aa != 0,
            isTruncated: flags & Flag.tc != 0,
            recursionDesired: flags & Flag.rd != 0,
            recursionAvailable: flags & Flag.ra != 0,
            reservedBit: flags & Flag.z != 0,
            authenticData: flags & Flag.ad != 0,
            checkingDisabled: flags & Flag.cd != 0,
            responseCode: DNSResponseCode(truncating: flags & 0x000F)
        )
    }

    /// The 16-bit flags word as written on the wire (with the header bits of the response code).
    public var flags: UInt16 {
        var value = UInt16(opcode.rawValue) << 11 | responseCode.headerBits
        if isResponse { value |= Flag.qr }
        if isAuthoritativeAnswer { value |= Flag.aa }
        if isTruncated { value |= Flag.tc }
        if recursionDesired { value |= Flag.rd }
        if recursionAvailable { value |= Flag.ra }
        if reservedBit { value |= Flag.z }
        if authenticData { value |= Flag.ad }
        if checkingDisabled { value |= Flag.cd }
        return value
    }

    /// Bit masks of the flags word.
    enum Flag {
        static let qr: UInt16 = 0x8000
        static let aa: UInt16 = 0x0400
        static let tc: UInt16 = 0x0200
        static let rd: UInt16 = 0x0100
        static let ra: UInt16 = 0x0080
        static let z: UInt16 = 0x0040
        static let ad: UInt16 = 0x0020
        static let cd: UInt16 = 0x0010
    }
}
