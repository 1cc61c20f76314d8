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
    public let id: UInt16
    /// The flags word as it appears on the wire.
    public let flags: UInt16
    /// QDCOUNT.
    public let questionCount: UInt16
    /// ANCOUNT.
    public let answerCount: UInt16
    /// NSCOUNT.
    public let authorityCount: UInt16
    /// ARCOUNT, including OPT.
    public let additionalCount: UInt16
    /// The octets of the first question's name, uncompressed, or `nil` when there is no question.
    public let questionNameRange: Range<Int>?
    /// The first question's type, or `nil` when there is no question.
    public let questionType: DNSRecordType?
    /// The first question's class, or `nil` when there is no question.
    public let questionClass: DNSClass?
    /// Where the answer section starts (just past the questions).
    public let answerSectionOffset: Int
    /// Where the additional section starts.
    public let additionalSectionOffset: Int
    /// The offset of the OPT record's first octet, if there is one.
    public let optRecordOffset: Int?
    /// The OPT record's advertised UDP payload size, if there is one (as sent, not clamped).
    public let ednsUDPPayloadSize: UInt16?
    /// The OPT record's DO bit.
    public let dnssecOK: Bool
    /// The upper eight bits of the response code, from OPT.
    public let extendedResponseCode: UInt8
    /// The length of the message.
    public let length: Int

    /// Indexes the readable bytes of `buffer` as one DNS message.
    ///
    /// The structure is checked completely: every count, name, RDLENGTH and the OPT record's placement.
    /// Compression pointers in record names are skipped, not followed; the first question's name must be
    /// uncompressed, as it is in every real message.
    ///
    /// - Parameter buffer: The message; it is not consumed.
    /// - Throws: ``DNSWireError`` with the code and offset of the first problem.
    public init(_ buffer: ByteBuffer) throws(DNSWireError) {
        let base = buffer.readerIndex
        let end = buffer.writerIndex
        guard end - base >= DNSHeader.wireLength,
            let (id, flags, qd, an, ns, ar) = buffer.getMultipleIntegers(
                at: base, as: (UInt16, UInt16, UInt16, UInt16, UInt16, UInt16).self)
        else {
            throw DNSWireError(.truncatedHeader, offset: 0, detail: "\(end - base) octets, a header needs 12")
        }
        self.id = id
        self.flags = flags
        self.questionCount = qd
        self.answerCount = an
        self.authorityCount = ns
        self.additionalCount = ar
        self.length = end - base

        var position = base + DNSHeader.wireLength
        var questionNameRange: Range<Int>?
        var questionType: DNSRecordType?
        var questionClass: DNSClass?
        for index in 0..<Int(qd) {
            guard position < end else {
                throw DNSWireError(.countsExceedMessage, offset: position - base, detail: "the header counts another question")
            }
            let nameStart = position
            position = try Self.skipName(buffer, at: position, base: base, end: end, allowPointer: index > 0)
            guard position + 4 <= end, let (type, klass) = buffer.getMultipleIntegers(at: position, as: (UInt16, UInt16).self)
            else { throw DNSWireError(.unexpectedEnd, offset: position - base, detail: "question type and class") }
            if index == 0 {
                questionNameRange = (nameStart - base)..<(position - base)
                questionType = DNSRecordType(rawValue: type)
                questionClass = DNSClass(rawValue: klass)
            }
            position += 4
        }
        self.questionNameRange = questionNameRange
        self.questionType = questionType
        self.questionClass = questionClass
        self.answerSectionOffset = position - base

        var additionalStart = position
        var opt: (offset: Int, size: UInt16, ttl: UInt32)?
        let recordCount = Int(an) + Int(ns) + Int(ar)
        let additionalIndex = Int(an) + Int(ns)
        for index in 0..<recordCount {
            if index == additionalIndex { additionalStart = position }
            guard position < end else {
                throw DNSWireError(.countsExceedMessage, offset: position - base, detail: "the header counts another record")
            }
            let recordStart = position
            position = try Self.skipName(buffer, at: position, base: base, end: end, allowPointer: true)
            guard position + 10 <= end,
                let (type, klass, ttl, rdLength) = buffer.getMultipleIntegers(
                    at: position, as: (UInt16, UInt16, UInt32, UInt16).self)
            else { throw DNSWireError(.unexpectedEnd, offset: position - base, detail: "record header") }
            position += 10
            guard position + Int(rdLength) <= end else {
                throw DNSWireError(.rdataOverrun, offset: position - 2 - base, detail: "RDLENGTH \(rdLength) runs past the end")
            }
            if type == DNSRecordType.opt.rawValue {
                guard index >= additionalIndex, position - 10 - recordStart == 1 else {
                    throw DNSWireError(
                        .invalidOPT, offset: recordStart - base, detail: "OPT must be in the additional section, owned by the root")
                }
                guard opt == nil else {
                    throw DNSWireError(.multipleOPT, offset: recordStart - base, detail: "a second OPT record")
                }
                opt = (recordStart - base, klass, ttl)
            }
            position += Int(rdLength)
        }
        if recordCount == additionalIndex { additionalStart = position }
        guard position == end else {
            throw DNSWireError(.trailingBytes, offset: position - base, detail: "\(end - position) octets after the last record")
        }
        self.additionalSectionOffset = additionalStart - base
        self.optRecordOffset = opt?.offset
        self.ednsUDPPayloadSize = opt?.size
        self.dnssecOK = (opt?.ttl ?? 0) & 0x8000 != 0
        self.extendedResponseCode = UInt8(truncatingIfNeeded: (opt?.ttl ?? 0) >> 24)
    }

    /// Skips a name without following pointers, checking label types, label bounds and the 255-octet
    /// budget of the labels it passes. Returns the absolute index just past the name.
    @inline(__always)
    private static func skipName(_ buffer: ByteBuffer, at start: Int, base: Int, end: Int, allowPointer: Bool)
        throws(DNSWireError) -> Int
    {
        var position = start
        var nameLength = 1
        while true {
            guard position < end, let length = buffer.getInteger(at: position, as: UInt8.self) else {
                throw DNSWireError(.unexpectedEnd, offset: position - base, detail: "name runs past the end")
            }
            switch length & 0xC0 {
            case 0x00:
                if length == 0 { return position + 1 }
                nameLength += Int(length) + 1
                guard nameLength <= DNSName.maximumWireLength else {
                    throw DNSWireError(.nameTooLong, offset: position - base, detail: "name exceeds 255 octets")
                }
                position += Int(length) + 1
            case 0xC0:
                guard allowPointer else {
                    throw DNSWireError(.badCompressionPointer, offset: position - base, detail: "compressed first question")
                }
                guard position + 2 <= end, let pointer = buffer.getInteger(at: position, as: UInt16.self) else {
                    throw DNSWireError(.unexpectedEnd, offset: position - base, detail: "pointer runs past the end")
                }
                // Cheap half of the backwards rule; the full decode also follows the chain.
                guard Int(pointer & 0x3FFF) < start - base else {
                    throw DNSWireError(
                        .badCompressionPointer, offset: position - base,
                        detail: "pointer to \(pointer & 0x3FFF) does not point before the name")
                }
                return position + 2
            default:
                throw DNSWireError(.reservedLabelType, offset: position - base, detail: DNSWireReader.reservedLabelDetail(length))
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
        guard range.count == otherRange.count else { return false }
        let start = buffer.readerIndex + range.lowerBound
        let otherStart = otherBuffer.readerIndex + otherRange.lowerBound
        for index in 0..<range.count {
            guard let a = buffer.getInteger(at: start + index, as: UInt8.self),
                let b = otherBuffer.getInteger(at: otherStart + index, as: UInt8.self),
                DNSName.lowercase(a) == DNSName.lowercase(b)
            else { return false }
        }
        return true
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
        var buffer = buffer  // Only read: no copy is made.
        walkTTLFields(&buffer) { _, offset in body(offset) }
    }

    /// Walks the records, calling `body` with the buffer and each non-OPT TTL offset. The structure was
    /// checked when the view was made, so the walk needs no error path; it stops early if the buffer
    /// does not hold that structure.
    @inline(__always)
    private func walkTTLFields(_ buffer: inout ByteBuffer, _ body: (inout ByteBuffer, Int) -> Void) {
        let base = buffer.readerIndex
        let end = base + length
        var position = base + answerSectionOffset
        let recordCount = Int(answerCount) + Int(authorityCount) + Int(additionalCount)
        for _ in 0..<recordCount {
            while position < end, let byte = buffer.getInteger(at: position, as: UInt8.self) {
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
            guard position + 10 <= end, let type = buffer.getInteger(at: position, as: UInt16.self),
                let rdLength = buffer.getInteger(at: position + 8, as: UInt16.self)
            else { return }
            if type != DNSRecordType.opt.rawValue { body(&buffer, position + 4 - base) }
            position += 10 + Int(rdLength)
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
        walkTTLFields(&buffer) { buffer, offset in
            let index = buffer.readerIndex + offset
            if let ttl = buffer.getInteger(at: index, as: UInt32.self) {
                buffer.setInteger(ttl > seconds ? ttl - seconds : 0, at: index)
            }
        }
    }
}
