import DoTCore
import NIOCore

/// The value stored under a ``RedisCacheKey``: a version octet, how long the entry was stored for
/// (milliseconds, 8 octets, big-endian), then the reply in wire form as the upstream sent it.
///
/// A reader learns the entry's age from Redis's own clock, `PTTL`: the age is the stored-for time
/// minus the time to live left. No replica's clock is compared with another's.
struct RedisCacheEntry {
    static let version: UInt8 = 1
    /// How long Redis keeps the entry: the reply's cache lifetime, plus the serve-stale window.
    var keptFor: Int64
    var reply: ParsedDNSMessage

    init(keptFor: Int64, reply: ParsedDNSMessage) {
        self.keptFor = keptFor
        self.reply = reply
    }

    /// Decodes a stored value; `nil` for a value of another version or one that does not parse.
    init?(_ value: ByteBuffer) {
        var value = value
        guard value.readInteger(as: UInt8.self) == Self.version, let keptFor = value.readInteger(as: Int64.self),
            keptFor > 0, let reply = try? ParsedDNSMessage(value), reply.view.isResponse
        else { return nil }
        self.keptFor = keptFor
        self.reply = reply
    }

    /// The stored form.
    var encoded: [UInt8] {
        var bytes: [UInt8] = [Self.version]
        bytes.reserveCapacity(9 + reply.buffer.readableBytes)
        withUnsafeBytes(of: keptFor.bigEndian) { bytes += $0 }
        reply.buffer.withUnsafeReadableBytes { bytes += $0 }
        return bytes
    }
}
