import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// Decides whether a UDP listener may send its replies as segmented datagrams (`UDPReplyCoalescer`).
enum UDPSegmentation {
    /// Whether a listener on `address` may segment its replies, before trying: the platform has
    /// `UDP_SEGMENT` and the address is a loopback address, so every client is reached over the
    /// loopback device.
    static func isCandidate(_ address: SocketAddress) -> Bool {
        guard System.supportsUDPSegmentationOffload, let host = ClientAddress(address) else { return false }
        return IPNetwork.loopbackIPv4.contains(host) || IPNetwork.loopbackIPv6.contains(host)
    }

    /// Sends one datagram of two segments from a new socket on `address`'s host (any port) to itself,
    /// or to `destination`.
    ///
    /// SwiftNIO closes a datagram channel whose send fails with `EIO` or `EINVAL`, so a listener must
    /// not learn from a client's reply that the kernel refuses segmented sends (as it would on some
    /// kernels with the loopback device's checksum offload turned off). Plain system calls rather than
    /// a channel: at start-up that keeps SwiftNIO's datagram write path, which no query has run yet,
    /// out of memory.
    ///
    /// - Throws: `IOError` naming the system call that failed.
    static func sendProbe(from address: SocketAddress, to destination: SocketAddress? = nil) throws {
        #if os(Linux)
        let family: CInt = if case .v6 = address { AF_INET6 } else { AF_INET }
        let socket = Glibc.socket(family, CInt(SOCK_DGRAM.rawValue), 0)
        guard socket >= 0 else { throw IOError(errnoCode: errno, reason: "socket") }
        defer { close(socket) }
        var local = address
        local.port = 0
        try local.withSockAddr { pointer, length in
            guard bind(socket, pointer, socklen_t(length)) == 0 else { throw IOError(errnoCode: errno, reason: "bind") }
        }
        var target = sockaddr_storage()
        var targetLength = socklen_t(MemoryLayout<sockaddr_storage>.size)
        if let destination {
            targetLength = destination.withSockAddr { pointer, length in
                withUnsafeMutableBytes(of: &target) {
                    $0.copyMemory(from: UnsafeRawBufferPointer(start: pointer, count: length))
                }
                return socklen_t(length)
            }
        } else {
            let named = withUnsafeMutablePointer(to: &target) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(socket, $0, &targetLength) }
            }
            guard named == 0 else { throw IOError(errnoCode: errno, reason: "getsockname") }
        }

        // The datagram, then one control message: level SOL_UDP (17), type UDP_SEGMENT (103,
        // linux/udp.h) and a UInt16 segment size after the cmsghdr, padded to 8 octets.
        let segmentSize = 16
        let headerLength = MemoryLayout<cmsghdr>.size
        let payload = UnsafeMutableRawBufferPointer.allocate(byteCount: 2 * segmentSize, alignment: 8)
        let control = UnsafeMutableRawBufferPointer.allocate(
            byteCount: headerLength + 8,
            alignment: MemoryLayout<cmsghdr>.alignment
        )
        defer {
            payload.deallocate()
            control.deallocate()
        }
        payload.initializeMemory(as: UInt8.self, repeating: 0)
        control.initializeMemory(as: UInt8.self, repeating: 0)
        control.storeBytes(
            of: headerLength + MemoryLayout<UInt16>.size,
            toByteOffset: MemoryLayout<cmsghdr>.offset(of: \.cmsg_len)!,
            as: Int.self
        )
        control.storeBytes(of: CInt(17), toByteOffset: MemoryLayout<cmsghdr>.offset(of: \.cmsg_level)!, as: CInt.self)
        control.storeBytes(of: CInt(103), toByteOffset: MemoryLayout<cmsghdr>.offset(of: \.cmsg_type)!, as: CInt.self)
        control.storeBytes(of: UInt16(segmentSize), toByteOffset: headerLength, as: UInt16.self)
        var vector = iovec(iov_base: payload.baseAddress, iov_len: payload.count)
        let sent = withUnsafeMutablePointer(to: &target) { name in
            withUnsafeMutablePointer(to: &vector) { vector in
                var message = msghdr(
                    msg_name: UnsafeMutableRawPointer(name),
                    msg_namelen: targetLength,
                    msg_iov: vector,
                    msg_iovlen: 1,
                    msg_control: control.baseAddress,
                    msg_controllen: control.count,
                    msg_flags: 0
                )
                return sendmsg(socket, &message, 0)
            }
        }
        guard sent == payload.count else { throw IOError(errnoCode: errno, reason: "sendmsg") }
        #else
        throw IOError(errnoCode: ENOTSUP, reason: "UDP_SEGMENT")
        #endif
    }
}
