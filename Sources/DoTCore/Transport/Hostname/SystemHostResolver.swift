import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#endif

/// Resolves upstream host names through the operating system (`getaddrinfo`, so `/etc/hosts` and
/// the system's resolver), on NIO's blocking-I/O thread pool.
///
/// The system does not report TTLs, so answers are kept for ``timeToLive``.
public struct SystemHostResolver: UpstreamHostResolver {
    /// How long an answer is used before the name is resolved again.
    public var timeToLive: TimeAmount
    private let threadPool: NIOThreadPool

    /// Creates a resolver.
    ///
    /// - Parameters:
    ///   - timeToLive: How long answers are kept; 5 minutes.
    ///   - threadPool: Where the blocking lookups run; NIO's shared pool by default.
    public init(timeToLive: TimeAmount = .minutes(5), threadPool: NIOThreadPool = .singleton) {
        self.timeToLive = timeToLive
        self.threadPool = threadPool
    }

    public func resolve(_ host: String, on eventLoop: any EventLoop) -> EventLoopFuture<UpstreamHostResolution> {
        let ttl = timeToLive
        return threadPool.runIfActive(eventLoop: eventLoop) {
            var hints = addrinfo()
            hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
            hints.ai_family = AF_UNSPEC
            var list: UnsafeMutablePointer<addrinfo>?
            let status = getaddrinfo(host, nil, &hints, &list)
            guard status == 0, let first = list else {
                let reason = String(cString: gai_strerror(status))
                throw UpstreamError(.connectionFailed, upstream: host, detail: "cannot resolve: \(reason)")
            }
            defer { freeaddrinfo(first) }
            var addresses: [String] = []
            var entry: UnsafeMutablePointer<addrinfo>? = first
            while let current = entry {
                if let address = current.pointee.ai_addr, let text = Self.text(of: address), !addresses.contains(text) {
                    addresses.append(text)
                }
                entry = current.pointee.ai_next
            }
            guard !addresses.isEmpty else {
                throw UpstreamError(.connectionFailed, upstream: host, detail: "cannot resolve: no addresses")
            }
            return UpstreamHostResolution(addresses: addresses, timeToLive: ttl)
        }
    }

    private static func text(of address: UnsafeMutablePointer<sockaddr>) -> String? {
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        switch Int32(address.pointee.sa_family) {
        case AF_INET:
            return address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { v4 in
                var raw = v4.pointee.sin_addr
                return inet_ntop(AF_INET, &raw, &buffer, socklen_t(buffer.count)).map { String(cString: $0) }
            }
        case AF_INET6:
            return address.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { v6 in
                var raw = v6.pointee.sin6_addr
                return inet_ntop(AF_INET6, &raw, &buffer, socklen_t(buffer.count)).map { String(cString: $0) }
            }
        default:
            return nil
        }
    }
}
