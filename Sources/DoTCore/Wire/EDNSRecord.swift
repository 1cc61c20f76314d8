import NIOCore

/// The EDNS(0) OPT pseudo-record of a message (RFC 6891 §6).
///
/// OPT is hop-by-hop: it describes the sender's capabilities for this one exchange. The upper eight
/// bits of the response code that OPT carries live in ``DNSHeader/responseCode``, so this type holds
/// only what is left.
public struct EDNSRecord: Hashable, Sendable, CustomStringConvertible {
    /// The smallest UDP payload size a sender may advertise; smaller values are read as 512.
    public static let minimumUDPPayloadSize: UInt16 = 512

    /// The largest UDP payload the sender can reassemble.
    public var udpPayloadSize: UInt16
    /// The EDNS version; 0 is the only one defined.
    public var version: UInt8
    /// DO: the sender wants DNSSEC records (RFC 3225).
    public var dnssecOK: Bool
    /// The remaining fifteen Z flag bits, kept as read.
    public var reservedFlags: UInt16
    /// The options, in wire order.
    public var options: [EDNSOption]

    /// Creates an OPT record.
    ///
    /// - Parameters:
    ///   - udpPayloadSize: The UDP payload size to advertise; 1,232 by default (DNS Flag Day 2020).
    ///   - version: The EDNS version; 0.
    ///   - dnssecOK: DO.
    ///   - reservedFlags: The other flag bits; keep them zero.
    ///   - options: The options.
    public init(
        udpPayloadSize: UInt16 = 1232,
        version: UInt8 = 0,
        dnssecOK: Bool = false,
        reservedFlags: UInt16 = 0,
        options: [EDNSOption] = []
    ) {
        self.udpPayloadSize = udpPayloadSize
        self.version = version
        self.dnssecOK = dnssecOK
        self.reservedFlags = reservedFlags & 0x7FFF
        self.options = options
    }

    /// The first option with the given code.
    public func option(_ code: EDNSOptionCode) -> EDNSOption? {
        options.first { $0.code == code }
    }

    /// The OPT TTL field: extended RCODE, version, DO and Z.
    func ttlField(extendedRCode: UInt8) -> UInt32 {
        UInt32(extendedRCode) << 24 | UInt32(version) << 16 | (dnssecOK ? 0x8000 : 0) | UInt32(reservedFlags)
    }

    public var description: String {
        var text = "EDNS\(version) udp=\(udpPayloadSize)"
        if dnssecOK { text += " do" }
        for option in options { text += " \(option)" }
        return text
    }

    /// The UDP payload size the proxy advertises to clients (DNS Flag Day 2020).
    static let proxyUDPPayloadSize: UInt16 = 1232

    /// The length of the record ``writeProxyOPT(into:dnssecOK:extendedRCode:)`` appends.
    static let proxyOPTLength = 11

    /// Appends the proxy's own OPT record, as sent to clients and upstreams: no options, or only an
    /// Extended DNS Error.
    static func writeProxyOPT(
        into out: inout ByteBuffer,
        dnssecOK: Bool,
        extendedRCode: UInt8 = 0,
        extendedError: ExtendedDNSError? = nil
    ) {
        let ttl = UInt32(extendedRCode) << 24 | (dnssecOK ? 0x8000 : 0)
        guard let extendedError else {
            out.writeMultipleIntegers(UInt8(0), DNSRecordType.opt.rawValue, proxyUDPPayloadSize, ttl, UInt16(0))
            return
        }
        let payload = extendedError.payload
        out.writeMultipleIntegers(
            UInt8(0),
            DNSRecordType.opt.rawValue,
            proxyUDPPayloadSize,
            ttl,
            UInt16(4 + payload.count),
            EDNSOptionCode.extendedError.rawValue,
            UInt16(payload.count)
        )
        out.writeBytes(payload)
    }
}
