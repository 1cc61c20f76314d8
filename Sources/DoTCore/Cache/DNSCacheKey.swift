import NIOCore

/// What a cached reply is filed under: the lower-cased question name, type and class, and the DO and
/// CD bits of the query (RFC 4035 answers differ with them).
///
/// The key is a 64-bit hash of those fields (with the process's random hash seed) rather than the
/// name itself, so making one allocates nothing. A cache must still compare the stored question with
/// the query's on a hit (``InMemoryDNSResponseCache`` does), so a collision can cost a miss but can
/// never serve a wrong answer.
public struct DNSCacheKey: Hashable, Sendable {
    let first: UInt64

    /// The key of the first question of `message`, or `nil` when it has no question.
    public init?(_ message: ByteBuffer, view: DNSMessageView) {
        guard let range = view.questionNameRange, let type = view.questionType, let klass = view.questionClass,
            range.count <= DNSName.maximumWireLength
        else { return nil }
        let flags = UInt8(view.dnssecOK ? 1 : 0) | UInt8(view.checkingDisabled ? 2 : 0)
        // Lower-case the name into a stack buffer and hash it in one call per hasher.
        let hash: Int? = message.withUnsafeReadableBytes { bytes in
            guard range.upperBound <= bytes.count else { return nil }
            return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: range.count + 5) { name in
                for offset in 0..<range.count { name[offset] = DNSName.lowercase(bytes[range.lowerBound + offset]) }
                name[range.count] = UInt8(type.rawValue >> 8)
                name[range.count + 1] = UInt8(truncatingIfNeeded: type.rawValue)
                name[range.count + 2] = UInt8(klass.rawValue >> 8)
                name[range.count + 3] = UInt8(truncatingIfNeeded: klass.rawValue)
                name[range.count + 4] = flags
                var hasher = Hasher()
                hasher.combine(bytes: UnsafeRawBufferPointer(name))
                return hasher.finalize()
            }
        }
        guard let hash else { return nil }
        self.first = UInt64(bitPattern: Int64(hash))
    }

    /// The key of the first question of `message`, or `nil` when it has no question.
    public init?(_ message: ParsedDNSMessage) {
        self.init(message.buffer, view: message.view)
    }

    public func hash(into hasher: inout Hasher) { hasher.combine(first) }
}
