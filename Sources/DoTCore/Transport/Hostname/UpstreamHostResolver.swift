import NIOCore

/// Turns an upstream's host name into IP addresses, so that `tls://dns.quad9.net` can be used.
///
/// ``BootstrapHostResolver`` asks configured bootstrap servers over plain DNS; ``SystemHostResolver``
/// asks the operating system. Either way the answer is only used to connect: the upstream's
/// certificate is still verified against the host name, so a lying bootstrap server can make the
/// upstream unreachable but cannot impersonate it.
public protocol UpstreamHostResolver: Sendable {
    /// Resolves `host`.
    ///
    /// - Parameters:
    ///   - host: A host name such as `dns.quad9.net`.
    ///   - eventLoop: The event loop to complete the future on.
    /// - Returns: The addresses, or a failed future with ``UpstreamError``.
    func resolve(_ host: String, on eventLoop: any EventLoop) -> EventLoopFuture<UpstreamHostResolution>
}
