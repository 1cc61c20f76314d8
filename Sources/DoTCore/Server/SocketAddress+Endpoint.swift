import NIOCore

extension SocketAddress {
    /// The address as people write it, for logs and messages: `127.0.0.1:53`, `[::1]:53`, or a Unix
    /// socket's path. (`description` also names the family and the host, as in
    /// `[IPv4]127.0.0.1/127.0.0.1:53`.)
    public var endpointDescription: String {
        switch self {
        case .v4: "\(ipAddress ?? "?"):\(port ?? 0)"
        case .v6: "[\(ipAddress ?? "?")]:\(port ?? 0)"
        case .unixDomainSocket: pathname ?? "unix socket"
        }
    }
}
