import NIOCore

/// A client's IP address as a plain value, extracted from a `SocketAddress` without allocating.
///
/// IPv4-mapped IPv6 addresses become IPv4, so a client is the same client on a dual-stack socket.
public struct ClientAddress: Hashable, Sendable, CustomStringConvertible {
    enum Kind: Hashable, Sendable {
        case v4(UInt32)
        case v6(UInt64, UInt64)
    }

    let kind: Kind

    /// The address of an IPv4 client.
    public init(_ address: IPv4Address) { kind = .v4(address.rawValue) }

    /// The address of an IPv6 client; an IPv4-mapped address becomes IPv4.
    public init(_ address: IPv6Address) {
        if let mapped = address.mappedIPv4 {
            kind = .v4(mapped.rawValue)
        } else {
            kind = .v6(address.high, address.low)
        }
    }

    /// The IP address of a socket address, or `nil` for a Unix domain socket.
    public init?(_ address: SocketAddress) {
        switch address {
        case .v4(let v4):
            self.init(IPv4Address(rawValue: UInt32(bigEndian: v4.address.sin_addr.s_addr)))
        case .v6(let v6):
            var storage = v6.address.sin6_addr
            let (high, low) = withUnsafeBytes(of: &storage) { bytes -> (UInt64, UInt64) in
                var high: UInt64 = 0
                var low: UInt64 = 0
                for index in 0..<8 { high = high << 8 | UInt64(bytes[index]) }
                for index in 8..<16 { low = low << 8 | UInt64(bytes[index]) }
                return (high, low)
            }
            self.init(IPv6Address(high: high, low: low))
        case .unixDomainSocket:
            return nil
        }
    }

    public var description: String {
        switch kind {
        case .v4(let value): "\(IPv4Address(rawValue: value))"
        case .v6(let high, let low): "\(IPv6Address(high: high, low: low))"
        }
    }
}
