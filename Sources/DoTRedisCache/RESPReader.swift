internal import CHiredis
import NIOCore

/// RESP in both directions, through hiredis: its reader turns the bytes Redis sends into replies (in
/// pieces, as they arrive), its formatter turns arguments into a binary-safe command.
///
/// Not `Sendable`: one per connection, used on its event loop.
final class RESPReader {
    private let reader: UnsafeMutablePointer<redisReader>

    /// The most octets of one reply held while it is incomplete; a connection that sends more is
    /// closed (a cached DNS reply is at most 64 KiB).
    static let maximumBuffered = 1 << 20

    init() {
        guard let reader = redisReaderCreate() else { fatalError("hiredis: out of memory creating a reader") }
        self.reader = reader
    }

    deinit { redisReaderFree(reader) }

    /// Octets received but not yet returned as replies.
    var buffered: Int { reader.pointee.len - reader.pointee.pos }

    /// Hands received bytes to the reader.
    func feed(_ bytes: ByteBuffer) throws(RedisError) {
        let status = bytes.withUnsafeReadableBytes { raw in
            redisReaderFeed(reader, raw.baseAddress?.assumingMemoryBound(to: CChar.self), raw.count)
        }
        guard status == REDIS_OK else { throw readerError() }
        guard buffered <= Self.maximumBuffered else {
            throw RedisError(.protocolError, "a reply of more than \(Self.maximumBuffered) octets")
        }
    }

    /// The next complete reply, or `nil` when more bytes are needed.
    func next() throws(RedisError) -> RESPValue? {
        var raw: UnsafeMutableRawPointer?
        guard redisReaderGetReply(reader, &raw) == REDIS_OK else { throw readerError() }
        guard let raw else { return nil }
        defer { freeReplyObject(raw) }
        return Self.value(of: raw.assumingMemoryBound(to: redisReply.self))
    }

    private func readerError() -> RedisError {
        let text = withUnsafeBytes(of: reader.pointee.errstr) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
        return RedisError(.protocolError, text)
    }

    private static func value(of reply: UnsafeMutablePointer<redisReply>) -> RESPValue {
        let reply = reply.pointee
        func text() -> String {
            guard let str = reply.str else { return "" }
            return String(decoding: UnsafeRawBufferPointer(start: str, count: Int(reply.len)), as: UTF8.self)
        }
        switch reply.type {
        case REDIS_REPLY_STRING:
            guard let str = reply.str else { return .bulkString(ByteBuffer()) }
            return .bulkString(ByteBuffer(bytes: UnsafeRawBufferPointer(start: str, count: Int(reply.len))))
        case REDIS_REPLY_STATUS:
            return .simpleString(text())
        case REDIS_REPLY_ERROR:
            return .error(text())
        case REDIS_REPLY_INTEGER:
            return .integer(Int64(reply.integer))
        case REDIS_REPLY_ARRAY:
            guard let elements = reply.element else { return .array([]) }
            return .array((0..<Int(reply.elements)).map { index in elements[index].map(value(of:)) ?? .null })
        default:
            return .null
        }
    }

    /// The RESP form of one command, `arguments[0]` being its name, appended to `buffer`.
    static func format(_ arguments: [[UInt8]], into buffer: inout ByteBuffer) {
        let joined = arguments.flatMap { $0 }
        let lengths = arguments.map(\.count)
        joined.withUnsafeBufferPointer { all in
            let base = UnsafeRawPointer(all.baseAddress ?? UnsafePointer(bitPattern: 1)!)
            var offset = 0
            var pointers: [UnsafePointer<CChar>?] = []
            for length in lengths {
                pointers.append((base + offset).assumingMemoryBound(to: CChar.self))
                offset += length
            }
            var command: UnsafeMutablePointer<CChar>?
            let length = redisFormatCommandArgv(&command, Int32(arguments.count), &pointers, lengths)
            guard length > 0, let command else { fatalError("hiredis: out of memory formatting a command") }
            defer { redisFreeCommand(command) }
            buffer.writeBytes(UnsafeRawBufferPointer(start: command, count: Int(length)))
        }
    }
}
