import NIOCore

/// The addresses of an upstream host name and how long they may be used.
public struct UpstreamHostResolution: Hashable, Sendable {
    /// IPv4 and IPv6 address literals, preferred first.
    public var addresses: [String]
    /// How long the answer stays valid; it is resolved again after this.
    public var timeToLive: TimeAmount

    /// Creates a resolution.
    ///
    /// - Parameters:
    ///   - addresses: Address literals, preferred first.
    ///   - timeToLive: How long they stay valid.
    public init(addresses: [String], timeToLive: TimeAmount) {
        self.addresses = addresses
        self.timeToLive = timeToLive
    }
}
