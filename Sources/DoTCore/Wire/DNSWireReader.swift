import NIOCore

/// A strict, bounds-checked cursor over one DNS message in a `ByteBuffer`.
///
/// Offsets in errors count from the first byte of the message. Every read goes through `ByteBuffer`'s
/// checked getters, so no read can leave the message. A read that would pass ``limit`` inside RDATA
/// is reported as an RDLENGTH mismatch; past the end of the message it is an unexpected end.
struct DNSWireReader {
    /// Longest pointer chain accepted in one name. A valid name needs far fewer: it has at most 127
    /// labels, and each pointer must land strictly before every position read so far.
    static let maximumPointerHops = 127

    let buffer: ByteBuffer

    /// Explains a length octet of 64 or more that is not a pointer: either an over-long label or a
    /// reserved label type (RFC 6891 §5), which read the same on the wire.
    static func reservedLabelDetail(_ octet: UInt8) -> String {
        "length octet \(octet): labels hold at most 63 octets, and label types 0x40 and 0x80 are reserved"
    }
    /// The absolute index of the message's first byte.
    let base: Int
    /// The absolute index just past the message's last byte.
    let end: Int
    /// Reads stop here; equal to ``end`` except inside RDATA.
    private(set) var limit: Int
    private var insideRData = false
    /// The absolute index of the next byte to read.
    var position: Int

    init(_ buffer: ByteBuffer) {
        self.buffer = buffer
        self.base = buffer.readerIndex
        self.end = buffer.writerIndex
        self.limit = end
        self.position = base
    }

    /// Confines reads to the RDATA that ends at `rdataEnd`, until ``endRData()``.
    mutating func beginRData(end rdataEnd: Int) {
        limit = rdataEnd
        insideRData = true
    }

    mutating func endRData() {
        limit = end
        insideRData = false
    }

    /// The current position counted from the start of the message.
    var offset: Int { position - base }
    var isAtEnd: Bool { position >= limit }

    private func overrun(_ count: Int) -> DNSWireError {
        if insideRData {
            return DNSWireError(.rdataLengthMismatch, offset: offset, detail: "RDATA too short for its type")
        }
        return DNSWireError(.unexpectedEnd, offset: offset, detail: "need \(count) more octets")
    }

    mutating func readUInt8() throws(DNSWireError) -> UInt8 {
        guard position + 1 <= limit, let value = buffer.getInteger(at: position, as: UInt8.self) else {
            throw overrun(1)
        }
        position += 1
        return value
    }

    mutating func readUInt16() throws(DNSWireError) -> UInt16 {
        guard position + 2 <= limit, let value = buffer.getInteger(at: position, as: UInt16.self) else {
            throw overrun(2)
        }
        position += 2
        return value
    }

    mutating func readUInt32() throws(DNSWireError) -> UInt32 {
        guard position + 4 <= limit, let value = buffer.getInteger(at: position, as: UInt32.self) else {
            throw overrun(4)
        }
        position += 4
        return value
    }

    mutating func readBytes(_ count: Int) throws(DNSWireError) -> [UInt8] {
        guard count >= 0, position + count <= limit, let bytes = buffer.getBytes(at: position, length: count) else {
            throw overrun(count)
        }
        position += count
        return bytes
    }

    /// Reads a possibly compressed name, enforcing the 63/255 bounds, the reserved label types and
    /// strictly backwards pointers.
    mutating func readName() throws(DNSWireError) -> DNSName {
        var wire: [UInt8] = []
        wire.reserveCapacity(32)
        var cursor = position
        var cursorLimit = limit
        var lowestVisited = position
        var resumePosition: Int?
        var hops = 0
        while true {
            guard cursor < cursorLimit, let length = buffer.getInteger(at: cursor, as: UInt8.self) else {
                position = cursor
                throw overrun(1)
            }
            switch length & 0xC0 {
            case 0x00:
                if length == 0 {
                    wire.append(0)
                    position = resumePosition ?? cursor + 1
                    return DNSName(uncheckedWireBytes: wire)
                }
                guard wire.count + Int(length) + 2 <= DNSName.maximumWireLength else {
                    throw DNSWireError(.nameTooLong, offset: cursor - base, detail: "name exceeds 255 octets")
                }
                guard cursor + 1 + Int(length) <= cursorLimit,
                    let label = buffer.getBytes(at: cursor + 1, length: Int(length))
                else {
                    position = cursor
                    throw overrun(Int(length) + 1)
                }
                wire.append(length)
                wire.append(contentsOf: label)
                cursor += 1 + Int(length)
            case 0xC0:
                guard cursor + 2 <= cursorLimit, let low = buffer.getInteger(at: cursor + 1, as: UInt8.self) else {
                    position = cursor
                    throw overrun(2)
                }
                let target = base + (Int(length & 0x3F) << 8 | Int(low))
                guard target < lowestVisited else {
                    throw DNSWireError(
                        .badCompressionPointer,
                        offset: cursor - base,
                        detail: "pointer to \(target - base) does not point before \(lowestVisited - base)"
                    )
                }
                hops += 1
                guard hops <= Self.maximumPointerHops else {
                    throw DNSWireError(.compressionHopLimit, offset: cursor - base, detail: "\(hops) pointers")
                }
                if resumePosition == nil { resumePosition = cursor + 2 }
                lowestVisited = target
                cursor = target
                // After the first jump the name may continue anywhere earlier in the message.
                cursorLimit = end
            default:
                throw DNSWireError(.reservedLabelType, offset: cursor - base, detail: Self.reservedLabelDetail(length))
            }
        }
    }
}
