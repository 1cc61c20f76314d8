import NIOCore

/// What a cached reply is filed under: the lower-cased question name, type and class, and the DO and
/// CD bits of the query (RFC 4035 answers differ with them).
///
/// The key holds two independent 64-bit hashes of those fields rather than the name itself, so making
/// one allocates nothing; a cache must still compare the stored question with the query's on a hit
/// (``InMemoryDNSResponseCache`` does), so a hash collision can never serve a wrong answer.
public struct DNSCacheKey: Hashable, Sendable {
    let first: UInt64
    let second: UInt64

    /// The key of the first question of `message`, or `nil` when it has no question.
    public init?(_ message: ByteBuffer, view: DNSMessageView) {
        guard let range = view.questionNameRange, let type = view.questionType, let klass = view.questionClass else { return nil }
        var first = Hasher()
        var second = Hasher()
        second.combine(0x5EED_CAFE as UInt64)
        let result: Void? = message.withUnsafeReadableBytes { bytes in
            guard range.upperBound <= bytes.count else { return nil }
            for index in range {
                let byte = DNSName.lowercase(bytes[index])
                first.combine(byte)
                second.combine(byte)
            }
            return ()
        }
        guard result != nil else { return nil }
        let flags = UInt8(view.dnssecOK ? 1 : 0) | UInt8(view.checkingDisabled ? 2 : 0)
        for hasher in [0, 1] {
            if hasher == 0 {
                first.combine(type.rawValue)
                first.combine(klass.rawValue)
                first.combine(flags)
            } else {
                second.combine(type.rawValue)
                second.combine(klass.rawValue)
                second.combine(flags)
            }
        }
        self.first = UInt64(bitPattern: Int64(first.finalize()))
        self.second = UInt64(bitPattern: Int64(second.finalize()))
    }
}
