import NIOCore

/// A zero-copy index over one DNS message in a `ByteBuffer`.
///
/// Parsing reads the header, the first question, the OPT record and the bounds of every section in a
/// single pass, without decoding names or RDATA and without allocating. The view stores offsets, not
/// the buffer: the in-place operations (``setID(_:in:)``, ``ageTTLs(by:in:)``, ``setTruncated(_:in:)``)
/// take the buffer `inout`, so a caller that owns the only reference never triggers a copy on write.
///
/// All offsets count from the start of the message, which is the buffer's reader index when the view
/// was made. Pass the same buffer, with the same reader index, to the methods that take one.
public struct DNSMessageView: Sendable {
    /// The message ID.
    public internal(set) var id: UInt16
    /// The flags word as it appears on the wire.
    public internal(set) var flags: UInt16
    /// QDCOUNT.
    public internal(set) var questionCount: UInt16
    /// ANCOUNT.
    public internal(set) var answerCount: UInt16
    /// NSCOUNT.
    public internal(set) var authorityCount: UInt16
    /// ARCOUNT, including OPT.
    public internal(set) var additionalCount: UInt16
    /// The octets of the first question's name, uncompressed, or `nil` when there is no question.
    public internal(set) var questionNameRange: Range<Int>?
    /// The first question's type, or `nil` when there is no question.
    public internal(set) var questionType: DNSRecordType?
    /// The first question's class, or `nil` when there is no question.
    public internal(set) var questionClass: DNSClass?
    /// Where the answer section starts (just past the questions).
    public internal(set) var answerSectionOffset: Int
    /// Where the additional section starts.
    public internal(set) var additionalSectionOffset: Int
    /// The offset of the OPT record's first octet, if there is one.
    public internal(set) var optRecordOffset: Int?
    /// Whether the OPT record ends the message, so it can be cut off (or replaced) by ending the
    /// message at ``optRecordOffset``; false without OPT.
    public internal(set) var optRecordIsLast: Bool
    /// The OPT record's advertised UDP payload size, if there is one (as sent, not clamped).
    public internal(set) var ednsUDPPayloadSize: UInt16?
    /// The OPT record's DO bit.
    public internal(set) var dnssecOK: Bool
    /// The upper eight bits of the response code, from OPT.
    public internal(set) var extendedResponseCode: UInt8
    /// The OPT record's EDNS version, if there is one; 0 is the only version defined (RFC 6891 §6.1.3).
    public internal(set) var ednsVersion: UInt8?
    /// The length of the message.
    public internal(set) var length: Int

    /// Indexes the readable bytes of `buffer` as one DNS message.
    ///
    /// The structure is checked completely: every count, name, RDLENGTH and the OPT record's placement.
    /// Compression pointers in record names are checked to point backwards but are not followed; the
    /// first question's name must be uncompressed, as it is in every real message.
    ///
    /// - Parameter buffer: The message; it is not consumed.
    /// - Throws: ``DNSWireError`` with the code and offset of the first problem.
    public init(_ buffer: ByteBuffer) throws(DNSWireError) {
        // One pass over the raw bytes: every read below is preceded by an explicit bounds check.
        let result = buffer.withUnsafeReadableBytes { bytes in
            Result { () throws(DNSWireError) -> DNSMessageView in try DNSMessageView(parsing: bytes) }
        }
        self = try result.get()
    }

    @inline(__always)
    private static func read16(_ bytes: UnsafeRawBufferPointer, _ index: Int) -> UInt16 {
        UInt16(bytes[index]) << 8 | UInt16(bytes[index + 1])
    }

    @inline(__always)
    private static func read32(_ bytes: UnsafeRawBufferPointer, _ index: Int) -> UInt32 {
        UInt32(read16(bytes, index)) << 16 | UInt32(read16(bytes, index + 2))
    }

    private init(parsing bytes: UnsafeRawBufferPointer) throws(DNSWireError) {
        let end = bytes.count
        guard end >= DNSHeader.wireLength else {
            throw DNSWireError(.truncatedHeader, offset: 0, detail: "\(end) octets, a header needs 12")
        }
        self.id = Self.read16(bytes, 0)
        self.flags = Self.read16(bytes, 2)
        let qd = Self.read16(bytes, 4)
        let an = Self.read16(bytes, 6)
        let ns = Self.read16(bytes, 8)
        let ar = Self.read16(bytes, 10)
        self.questionCount = qd
        self.answerCount = an
        self.authorityCount = ns
        self.additionalCount = ar
        self.length = end

        var position = DNSHeader.wireLength
        var questionNameRange: Range<Int>?
        var questionType: DNSRecordType?
        var questionClass: DNSClass?
        for index in 0..<Int(qd) {
            guard position < end else {
                throw DNSWireError(.countsExceedMessage, offset: position, detail: "the header counts another question")
            }
            let nameStart = position
            position = try Self.skipName(bytes, at: position, allowPointer: index > 0)
            guard position + 4 <= end else {
                throw DNSWireError(.unexpectedEnd, offset: position, detail: "question type and class")
            }
            if index == 0 {
                questionNameRange = nameStart..<position
                questionType = DNSRecordType(rawValue: Self.read16(bytes, position))
                questionClass = DNSClass(rawValue: Self.read16(bytes, position + 2))
            }
            position += 4
        }
        self.questionNameRange = questionNameRange
        self.questionType = questionType
        self.questionClass = questionClass
        self.answerSectionOffset = position

        var additionalStart = position
        var optOffset: Int?
        var optSize: UInt16 = 0
        var optTTL: UInt32 = 0
        var optEnd = 0
        let recordCount = Int(an) + Int(ns) + Int(ar)
        let additionalIndex = Int(an) + Int(ns)
        for index in 0..<recordCount {
            if index == additionalIndex { additionalStart = position }
            guard position < end else {
                throw DNSWireError(.countsExceedMessage, offset: position, detail: "the header counts another record")
            }
            let recordStart = position
            position = try Self.skipName(bytes, at: position, allowPointer: true)
            guard position + 10 <= end else {
                throw DNSWireError(.unexpectedEnd, offset: position, detail: "record header")
            }
            let type = Self.read16(bytes, position)
            let rdLength = Int(Self.read16(bytes, position + 8))
            if type == DNSRecordType.opt.rawValue {
                guard index >= additionalIndex, position - recordStart == 1 else {
                    throw DNSWireError(
                        .invalidOPT,
                        offset: recordStart,
                        detail: "OPT must be in the additional section, owned by the root"
                    )
                }
                guard optOffset == nil else {
                    throw DNSWireError(.multipleOPT, offset: recordStart, detail: "a second OPT record")
                }
                optOffset = recordStart
                optSize = Self.read16(bytes, position + 2)
                optTTL = Self.read32(bytes, position + 4)
                optEnd = position + 10 + rdLength
            }
            position += 10
            guard position + rdLength <= end else {
                throw DNSWireError(
                    .rdataOverrun,
                    offset: position - 2,
                    detail: "RDLENGTH \(rdLength) runs past the end"
                )
            }
            position += rdLength
        }
        if recordCount == additionalIndex { additionalStart = position }
        guard position == end else {
            throw DNSWireError(
                .trailingBytes,
                offset: position,
                detail: "\(end - position) octets after the last record"
            )
        }
        self.additionalSectionOffset = additionalStart
        self.optRecordOffset = optOffset
        self.optRecordIsLast = optOffset != nil && optEnd == end
        self.ednsUDPPayloadSize = optOffset == nil ? nil : optSize
        self.dnssecOK = optTTL & 0x8000 != 0
        self.extendedResponseCode = UInt8(truncatingIfNeeded: optTTL >> 24)
        self.ednsVersion = optOffset == nil ? nil : UInt8(truncatingIfNeeded: optTTL >> 16)
    }

    /// Skips a name without following pointers, checking label types, label bounds, the 255-octet
    /// budget of the labels it passes, and that a pointer points before the name. Returns the index
    /// just past the name.
    @inline(__always)
    private static func skipName(
        _ bytes: UnsafeRawBufferPointer,
        at start: Int,
        allowPointer: Bool
    ) throws(DNSWireError) -> Int {
        let end = bytes.count
        var position = start
        var nameLength = 1
        while true {
            guard position < end else {
                throw DNSWireError(.unexpectedEnd, offset: position, detail: "name runs past the end")
            }
            let length = bytes[position]
            switch length & 0xC0 {
            case 0x00:
                if length == 0 { return position + 1 }
                nameLength += Int(length) + 1
                guard nameLength <= DNSName.maximumWireLength else {
                    throw DNSWireError(.nameTooLong, offset: position, detail: "name exceeds 255 octets")
                }
                position += Int(length) + 1
            case 0xC0:
                guard allowPointer else {
                    throw DNSWireError(.badCompressionPointer, offset: position, detail: "compressed first question")
                }
                guard position + 2 <= end else {
                    throw DNSWireError(.unexpectedEnd, offset: position, detail: "pointer runs past the end")
                }
                // Cheap half of the backwards rule; the full decode also follows the chain.
                let target = Int(read16(bytes, position) & 0x3FFF)
                guard target < start else {
                    throw DNSWireError(
                        .badCompressionPointer,
                        offset: position,
                        detail: "pointer to \(target) does not point before the name"
                    )
                }
                return position + 2
            default:
                throw DNSWireError(
                    .reservedLabelType,
                    offset: position,
                    detail: DNSWireReader.reservedLabelDetail(length)
                )
            }
        }
    }

    /// The header as far as the flags tell it, with the extended response code from OPT.
    public var header: DNSHeader {
        var header = DNSHeader(id: id, flags: flags)
        header.responseCode = responseCode
        return header
    }

    /// QR: whether the message is a response.
    public var isResponse: Bool { flags & DNSHeader.Flag.qr != 0 }
    /// TC: whether the message was truncated.
    public var isTruncated: Bool { flags & DNSHeader.Flag.tc != 0 }
    /// CD: whether the client disabled DNSSEC checking.
    public var checkingDisabled: Bool { flags & DNSHeader.Flag.cd != 0 }
    /// The opcode.
    public var opcode: DNSOpcode { DNSOpcode(truncating: UInt8(truncatingIfNeeded: flags >> 11)) }
    /// The full response code, with the extended bits from OPT.
    public var responseCode: DNSResponseCode {
        DNSResponseCode(truncating: UInt16(extendedResponseCode) << 4 | flags & 0x000F)
    }

    /// The UDP payload size a client can receive: 512 without OPT, and never less than 512 (RFC 6891 §6.2.5).
    public var clientUDPPayloadSize: Int {
        max(Int(EDNSRecord.minimumUDPPayloadSize), Int(ednsUDPPayloadSize ?? 0))
    }

    /// Decodes the first question's name (this allocates).
    public func questionName(in buffer: ByteBuffer) -> DNSName? {
        guard let range = questionNameRange,
            let bytes = buffer.getBytes(at: buffer.readerIndex + range.lowerBound, length: range.count)
        else { return nil }
        return DNSName(uncheckedWireBytes: bytes)
    }

    /// Whether the first question of `other` (over `otherBuffer`) is the same as this one's, ignoring
    /// the case of the name. Used to match a reply to its query.
    public func questionMatches(_ other: DNSMessageView, in buffer: ByteBuffer, otherBuffer: ByteBuffer) -> Bool {
        guard questionType == other.questionType, questionClass == other.questionClass else { return false }
        guard let range = questionNameRange, let otherRange = other.questionNameRange else {
            return questionNameRange == nil && other.questionNameRange == nil
        }
        // Compare the raw octets: one access to each buffer instead of two bounds-checked reads per octet.
        return buffer.withUnsafeReadableBytes { bytes in
            otherBuffer.withUnsafeReadableBytes { otherBytes in
                range.upperBound <= bytes.count && otherRange.upperBound <= otherBytes.count
                    && DNSName.equalIgnoringCase(
                        UnsafeRawBufferPointer(rebasing: bytes[range]),
                        UnsafeRawBufferPointer(rebasing: otherBytes[otherRange])
                    )
            }
        }
    }

    /// Writes a new message ID in place.
    public func setID(_ id: UInt16, in buffer: inout ByteBuffer) {
        buffer.setInteger(id, at: buffer.readerIndex)
    }

    /// Sets or clears the TC flag in place.
    public func setTruncated(_ truncated: Bool, in buffer: inout ByteBuffer) {
        let newFlags = truncated ? flags | DNSHeader.Flag.tc : flags & ~DNSHeader.Flag.tc
        buffer.setInteger(newFlags, at: buffer.readerIndex + 2)
    }

    /// Calls `body` with the offset of the TTL field of every record in the answer, authority and
    /// additional sections, OPT excepted, in wire order.
    public func forEachTTLOffset(in buffer: ByteBuffer, _ body: (Int) -> Void) {
        buffer.withUnsafeReadableBytes { walkTTLFields($0, body) }
    }

    /// Where a record sits in a message, as ``forEachRecord(in:_:)`` reports it.
    public struct RecordLocation: Sendable {
        /// 0 for the answer section, 1 for authority, 2 for additional.
        public var section: Int
        /// The record type.
        public var type: DNSRecordType
        /// The TTL as stored.
        public var ttl: UInt32
        /// The offset of the TTL field from the start of the message.
        public var ttlOffset: Int
        /// The RDATA's octets, as offsets from the start of the message.
        public var rdata: Range<Int>

        /// The TTL as RFC 2181 §8 reads it: a value with the top bit set counts as 0.
        public var effectiveTTL: UInt32 { ttl & 0x8000_0000 == 0 ? ttl : 0 }
    }

    /// Rewrites the TTL of every record but OPT in `buffer` (the message this view describes) to its
    /// ``RecordLocation/effectiveTTL``, lowered to `ceiling` when above it. The buffer is written, and
    /// so possibly copied, only when a TTL changes.
    ///
    /// - Returns: How many TTLs were rewritten.
    @discardableResult
    public func capTTLs(in buffer: inout ByteBuffer, ceiling: UInt32) -> Int {
        var changes: [(offset: Int, ttl: UInt32)] = []
        forEachRecord(in: buffer) { record in
            guard record.type != .opt else { return }
            let capped = min(record.effectiveTTL, ceiling)
            if capped != record.ttl { changes.append((record.ttlOffset, capped)) }
        }
        for change in changes { buffer.setInteger(change.ttl, at: buffer.readerIndex + change.offset) }
        return changes.count
    }

    /// Calls `body` for every record of the answer, authority and additional sections, OPT included,
    /// in wire order, without decoding names or RDATA.
    public func forEachRecord(in buffer: ByteBuffer, _ body: (RecordLocation) -> Void) {
        buffer.withUnsafeReadableBytes { walkRecords($0, body) }
    }

    /// Walks the records of an already validated message. It needs no error path, and stops early if
    /// the bytes do not hold the structure the view was made from.
    @inline(__always)
    private func walkRecords(_ bytes: UnsafeRawBufferPointer, _ body: (RecordLocation) -> Void) {
        let end = min(length, bytes.count)
        var position = answerSectionOffset
        let firstAuthority = Int(answerCount)
        let firstAdditional = firstAuthority + Int(authorityCount)
        for index in 0..<(firstAdditional + Int(additionalCount)) {
            while position < end {
                let byte = bytes[position]
                if byte == 0 {
                    position += 1
                    break
                }
                if byte & 0xC0 == 0xC0 {
                    position += 2
                    break
                }
                position += Int(byte) + 1
            }
            guard position + 10 <= end else { return }
            let rdLength = Int(Self.read16(bytes, position + 8))
            guard position + 10 + rdLength <= end else { return }
            body(
                RecordLocation(
                    section: index < firstAuthority ? 0 : index < firstAdditional ? 1 : 2,
                    type: DNSRecordType(rawValue: Self.read16(bytes, position)),
                    ttl: Self.read32(bytes, position + 4),
                    ttlOffset: position + 4,
                    rdata: (position + 10)..<(position + 10 + rdLength)
                )
            )
            position += 10 + rdLength
        }
    }

    /// Calls `body` with each non-OPT TTL offset.
    @inline(__always)
    private func walkTTLFields(_ bytes: UnsafeRawBufferPointer, _ body: (Int) -> Void) {
        walkRecords(bytes) { record in
            if record.type != .opt { body(record.ttlOffset) }
        }
    }

    /// The offsets of every TTL field, OPT excepted (this allocates; see ``forEachTTLOffset(in:_:)``).
    public func ttlOffsets(in buffer: ByteBuffer) -> [Int] {
        var offsets: [Int] = []
        offsets.reserveCapacity(Int(answerCount) + Int(authorityCount) + Int(additionalCount))
        forEachTTLOffset(in: buffer) { offsets.append($0) }
        return offsets
    }

    /// Subtracts `seconds` from every TTL in place, stopping at zero. OPT is left alone.
    public func ageTTLs(by seconds: UInt32, in buffer: inout ByteBuffer) {
        guard seconds > 0 else { return }
        buffer.withUnsafeMutableReadableBytes { bytes in
            walkTTLFields(UnsafeRawBufferPointer(bytes)) { offset in
                guard offset + 4 <= bytes.count else { return }
                let ttl = Self.read32(UnsafeRawBufferPointer(bytes), offset)
                let aged = ttl > seconds ? ttl - seconds : 0
                bytes[offset] = UInt8(aged >> 24)
                bytes[offset + 1] = UInt8(truncatingIfNeeded: aged >> 16)
                bytes[offset + 2] = UInt8(truncatingIfNeeded: aged >> 8)
                bytes[offset + 3] = UInt8(truncatingIfNeeded: aged)
            }
        }
    }
}
