import NIOCore

/// An IPv4 or IPv6 network in CIDR notation, such as `192.168.0.0/16` or `fd00::/8`.
///
/// IPv4-mapped IPv6 client addresses (`::ffff:192.0.2.1`) match IPv4 networks, because dual-stack
/// sockets report IPv4 clients that way.
public struct IPNetwork: Hashable, Sendable, CustomStringConvertible, LosslessStringConvertible {
    enum Base: Hashable, Sendable {
        case v4(UInt32, UInt8)
        case v6(high: UInt64, low: UInt64, UInt8)
    }

    let base: Base

    /// Parses `ADDRESS/LENGTH`, or a bare address as a single host (/32 or /128). Host bits must be zero.
    public init?(_ text: String) {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        let addressText = String(parts[0])
        if let v4 = IPv4Address(addressText) {
            let length = parts.count == 2 ? UInt8(parts[1]) : 32
            guard let length, length <= 32 else { return nil }
            guard v4.rawValue & ~Self.mask32(length) == 0 else { return nil }
            base = .v4(v4.rawValue, length)
        } else if let v6 = IPv6Address(addressText) {
            let length = parts.count == 2 ? UInt8(parts[1]) : 128
            guard let length, length <= 128 else { return nil }
            let (highMask, lowMask) = Self.mask128(length)
            guard v6.high & ~highMask == 0, v6.low & ~lowMask == 0 else { return nil }
            base = .v6(high: v6.high, low: v6.low, length)
        } else {
            return nil
        }
    }

    /// Every IPv4 address.
    public static let anyIPv4 = IPNetwork("0.0.0.0/0")!
    /// Every IPv6 address.
    public static let anyIPv6 = IPNetwork("::/0")!
    /// The IPv4 loopback network, 127.0.0.0/8.
    public static let loopbackIPv4 = IPNetwork("127.0.0.0/8")!
    /// The IPv6 loopback address, ::1/128.
    public static let loopbackIPv6 = IPNetwork("::1/128")!

    /// Whether this network contains `address`.
    public func contains(_ address: ClientAddress) -> Bool {
        switch (base, address.kind) {
        case (.v4(let network, let length), .v4(let value)):
            return value & Self.mask32(length) == network
        case (.v6(let high, let low, let length), .v6(let valueHigh, let valueLow)):
            let (highMask, lowMask) = Self.mask128(length)
            return valueHigh & highMask == high && valueLow & lowMask == low
        default:
            return false
        }
    }

    /// Whether this network covers the whole address family (`0.0.0.0/0` or `::/0`).
    public var isEverything: Bool {
        switch base {
        case .v4(_, let length): length == 0
        case .v6(_, _, let length): length == 0
        }
    }

    public var description: String {
        switch base {
        case .v4(let value, let length): "\(IPv4Address(rawValue: value))/\(length)"
        case .v6(let high, let low, let length): "\(IPv6Address(high: high, low: low))/\(length)"
        }
    }

    @inline(__always)
    static func mask32(_ length: UInt8) -> UInt32 {
        length == 0 ? 0 : UInt32.max << (32 - UInt32(length))
    }

    @inline(__always)
    static func mask128(_ length: UInt8) -> (UInt64, UInt64) {
        if length <= 64 { return (length == 0 ? 0 : UInt64.max << (64 - UInt64(length)), 0) }
        return (UInt64.max, UInt64.max << (128 - UInt64(length)))
    }
}
