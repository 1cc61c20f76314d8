/// One EDNS(0) option: a code and its payload (RFC 6891 §6.1.2).
///
/// Every option is kept as bytes, so unknown options round-trip unchanged. The options this library
/// understands have typed constructors and accessors, and their payloads are validated when a message
/// is decoded.
public struct EDNSOption: Hashable, Sendable, CustomStringConvertible {
    /// The option code.
    public var code: EDNSOptionCode
    /// The payload.
    public var data: [UInt8]

    /// Creates an option from its code and payload.
    public init(code: EDNSOptionCode, data: [UInt8]) {
        self.code = code
        self.data = data
    }

    /// A padding option (RFC 7830) with `length` zero octets of payload.
    public static func padding(length: Int) -> EDNSOption {
        EDNSOption(code: .padding, data: Array(repeating: 0, count: max(0, length)))
    }

    /// A cookie option (RFC 7873) with an 8-octet client cookie and an optional server cookie.
    public static func cookie(client: [UInt8], server: [UInt8] = []) -> EDNSOption {
        EDNSOption(code: .cookie, data: client + server)
    }

    /// A TCP keepalive option (RFC 7828); `timeout` is in units of 100 ms, and `nil` sends it empty.
    public static func tcpKeepalive(timeout: UInt16?) -> EDNSOption {
        guard let timeout else { return EDNSOption(code: .tcpKeepalive, data: []) }
        return EDNSOption(code: .tcpKeepalive, data: [UInt8(timeout >> 8), UInt8(truncatingIfNeeded: timeout)])
    }

    /// A client subnet option (RFC 7871).
    public static func clientSubnet(_ subnet: EDNSClientSubnet) -> EDNSOption {
        EDNSOption(code: .clientSubnet, data: subnet.wireBytes)
    }

    /// The client and server cookies, if this is a well-formed cookie option.
    public var cookie: (client: [UInt8], server: [UInt8])? {
        guard code == .cookie, data.count == 8 || (16...40).contains(data.count) else { return nil }
        return (Array(data[..<8]), Array(data[8...]))
    }

    /// The keepalive timeout in units of 100 ms, if this is a keepalive option that carries one.
    public var tcpKeepaliveTimeout: UInt16? {
        guard code == .tcpKeepalive, data.count == 2 else { return nil }
        return UInt16(data[0]) << 8 | UInt16(data[1])
    }

    /// The client subnet, if this is a well-formed client subnet option.
    public var clientSubnet: EDNSClientSubnet? {
        guard code == .clientSubnet else { return nil }
        return EDNSClientSubnet(wireBytes: data)
    }

    /// Checks the payload of the options this library knows; unknown options always pass.
    func validate() -> Bool {
        switch code {
        case .cookie: cookie != nil
        case .tcpKeepalive: data.isEmpty || data.count == 2
        case .clientSubnet: clientSubnet != nil
        default: true
        }
    }

    public var description: String { "\(code)=\(data.count)B" }
}
