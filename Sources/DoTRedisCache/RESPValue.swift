import NIOCore

/// One RESP2 reply from Redis.
enum RESPValue: Hashable, Sendable {
    /// `+OK`
    case simpleString(String)
    /// `-ERR …`
    case error(String)
    /// `:42`
    case integer(Int64)
    /// `$n` then n octets.
    case bulkString(ByteBuffer)
    /// `$-1` or `*-1`.
    case null
    /// `*n` then n replies.
    case array([RESPValue])
}
