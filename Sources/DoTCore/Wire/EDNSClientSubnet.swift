/// The payload of an EDNS client subnet option (RFC 7871 §6).
public struct EDNSClientSubnet: Hashable, Sendable {
    /// The address family: 1 for IPv4, 2 for IPv6.
    public var family: UInt16
    /// How many leading bits of ``address`` are significant.
    public var sourcePrefixLength: UInt8
    /// How many bits the answer covers; 0 in a query.
    public var scopePrefixLength: UInt8
    /// The significant octets of the address, `ceil(sourcePrefixLength / 8)` of them.
    public var address: [UInt8]

    /// Creates a client subnet, or returns `nil` when the address length does not fit the prefix.
    public init?(family: UInt16, sourcePrefixLength: UInt8, scopePrefixLength: UInt8, address: [UInt8]) {
        let maximumBits = family == 1 ? 32 : family == 2 ? 128 : 0
        guard maximumBits > 0, Int(sourcePrefixLength) <= maximumBits, Int(scopePrefixLength) <= maximumBits,
            address.count == (Int(sourcePrefixLength) + 7) / 8
        else { return nil }
        self.family = family
        self.sourcePrefixLength = sourcePrefixLength
        self.scopePrefixLength = scopePrefixLength
        self.address = address
    }

    init?(wireBytes: [UInt8]) {
        guard wireBytes.count >= 4 else { return nil }
        self.init(
            family: UInt16(wireBytes[0]) << 8 | UInt16(wireBytes[1]),
            sourcePrefixLength: wireBytes[2],
            scopePrefixLength: wireBytes[3],
            address: Array(wireBytes[4...])
        )
    }

    var wireBytes: [UInt8] {
        [UInt8(family >> 8), UInt8(truncatingIfNeeded: family), sourcePrefixLength, scopePrefixLength] + address
    }
}
