import NIOCore

/// A fully decoded DNS message.
///
/// Decoding is strict and bounded (see ``DNSWireError``); use it for tools, tests and anything that
/// needs the records. The proxy's hot path uses ``DNSMessageView`` instead, which decodes nothing it
/// does not need.
public struct DNSMessage: Hashable, Sendable {
    /// The header; its response code includes the extended bits from OPT.
    public var header: DNSHeader
    /// The question section.
    public var questions: [DNSQuestion]
    /// The answer section.
    public var answers: [DNSResourceRecord]
    /// The authority section.
    public var authorities: [DNSResourceRecord]
    /// The additional section, without the OPT pseudo-record.
    public var additionals: [DNSResourceRecord]
    /// The OPT pseudo-record, if the message has one.
    public var edns: EDNSRecord?

    /// Creates a message.
    ///
    /// - Parameters:
    ///   - header: The header.
    ///   - questions: The question section.
    ///   - answers: The answer section.
    ///   - authorities: The authority section.
    ///   - additionals: The additional section, without OPT.
    ///   - edns: The OPT pseudo-record, if any.
    public init(
        header: DNSHeader,
        questions: [DNSQuestion] = [],
        answers: [DNSResourceRecord] = [],
        authorities: [DNSResourceRecord] = [],
        additionals: [DNSResourceRecord] = [],
        edns: EDNSRecord? = nil
    ) {
        self.header = header
        self.questions = questions
        self.answers = answers
        self.authorities = authorities
        self.additionals = additionals
        self.edns = edns
    }

    /// Creates a standard query for one question, with recursion desired.
    ///
    /// - Parameters:
    ///   - name: The name to ask for.
    ///   - type: The record type to ask for.
    ///   - class: The class; `IN` by default.
    ///   - id: The message ID.
    ///   - edns: The OPT record to send; an EDNS(0) record advertising 1,232 octets by default.
    public static func query(
        name: DNSName,
        type: DNSRecordType,
        class: DNSClass = .internet,
        id: UInt16,
        edns: EDNSRecord? = EDNSRecord()
    ) -> DNSMessage {
        DNSMessage(
            header: DNSHeader(id: id, recursionDesired: true),
            questions: [DNSQuestion(name: name, type: type, class: `class`)],
            edns: edns
        )
    }

    /// Decodes the readable bytes of `buffer` as one message; the buffer is not consumed.
    ///
    /// - Parameter buffer: Exactly one message, as read from UDP or taken from a stream frame.
    /// - Throws: ``DNSWireError`` with the code and offset of the first problem found.
    public init(decoding buffer: ByteBuffer) throws(DNSWireError) {
        var reader = DNSWireReader(buffer)
        guard buffer.readableBytes >= DNSHeader.wireLength else {
            throw DNSWireError(
                .truncatedHeader,
                offset: 0,
                detail: "\(buffer.readableBytes) octets, a header needs 12"
            )
        }
        let id = try reader.readUInt16()
        let flags = try reader.readUInt16()
        let counts = (
            try reader.readUInt16(), try reader.readUInt16(), try reader.readUInt16(), try reader.readUInt16()
        )
        var header = DNSHeader(id: id, flags: flags)

        var questions: [DNSQuestion] = []
        questions.reserveCapacity(Int(min(counts.0, 16)))
        for _ in 0..<counts.0 {
            try Self.checkMoreEntries(reader, section: "question")
            let name = try reader.readName()
            questions.append(
                DNSQuestion(
                    name: name,
                    type: DNSRecordType(rawValue: try reader.readUInt16()),
                    class: DNSClass(rawValue: try reader.readUInt16())
                )
            )
        }

        var edns: EDNSRecord?
        var extendedRCode: UInt8 = 0
        var sections: [[DNSResourceRecord]] = [[], [], []]
        for (sectionIndex, count) in [counts.1, counts.2, counts.3].enumerated() {
            sections[sectionIndex].reserveCapacity(Int(min(count, 64)))
            for _ in 0..<count {
                try Self.checkMoreEntries(reader, section: "record")
                let recordOffset = reader.offset
                let name = try reader.readName()
                let type = DNSRecordType(rawValue: try reader.readUInt16())
                let classField = try reader.readUInt16()
                let ttl = try reader.readUInt32()
                let rdLength = Int(try reader.readUInt16())
                guard reader.position + rdLength <= reader.end else {
                    throw DNSWireError(
                        .rdataOverrun,
                        offset: reader.offset - 2,
                        detail: "RDLENGTH \(rdLength) runs past the end"
                    )
                }
                let rdataEnd = reader.position + rdLength
                reader.beginRData(end: rdataEnd)
                if type == .opt {
                    guard sectionIndex == 2, name.isRoot else {
                        throw DNSWireError(
                            .invalidOPT,
                            offset: recordOffset,
                            detail: "OPT must be in the additional section, owned by the root"
                        )
                    }
                    guard edns == nil else {
                        throw DNSWireError(.multipleOPT, offset: recordOffset, detail: "a second OPT record")
                    }
                    extendedRCode = UInt8(ttl >> 24)
                    edns = try Self.decodeOPT(classField: classField, ttl: ttl, reader: &reader)
                } else {
                    let rdata = try DNSRData.decode(type: type, from: &reader)
                    sections[sectionIndex].append(
                        DNSResourceRecord(
                            name: name,
                            type: type,
                            class: DNSClass(rawValue: classField),
                            ttl: ttl,
                            rdata: rdata
                        )
                    )
                }
                guard reader.position == rdataEnd else {
                    throw DNSWireError(
                        .rdataLengthMismatch,
                        offset: reader.offset,
                        detail: "\(type) RDATA ends \(rdataEnd - reader.position) octets before RDLENGTH"
                    )
                }
                reader.endRData()
            }
        }
        guard reader.position == reader.end else {
            throw DNSWireError(
                .trailingBytes,
                offset: reader.offset,
                detail: "\(reader.end - reader.position) octets after the last record"
            )
        }
        header.responseCode = DNSResponseCode(truncating: UInt16(extendedRCode) << 4 | header.responseCode.rawValue)
        self.init(
            header: header,
            questions: questions,
            answers: sections[0],
            authorities: sections[1],
            additionals: sections[2],
            edns: edns
        )
    }

    private static func checkMoreEntries(_ reader: DNSWireReader, section: String) throws(DNSWireError) {
        guard !reader.isAtEnd else {
            throw DNSWireError(
                .countsExceedMessage,
                offset: reader.offset,
                detail: "the header counts another \(section)"
            )
        }
    }

    private static func decodeOPT(
        classField: UInt16,
        ttl: UInt32,
        reader: inout DNSWireReader
    )
        throws(DNSWireError) -> EDNSRecord
    {
        var options: [EDNSOption] = []
        while !reader.isAtEnd {
            let optionOffset = reader.offset
            let code = EDNSOptionCode(rawValue: try reader.readUInt16())
            let length = try reader.readUInt16()
            let option = EDNSOption(code: code, data: try reader.readBytes(Int(length)))
            guard option.validate() else {
                throw DNSWireError(.invalidOption, offset: optionOffset, detail: "malformed \(code) option")
            }
            options.append(option)
        }
        return EDNSRecord(
            udpPayloadSize: classField,
            version: UInt8(truncatingIfNeeded: ttl >> 16),
            dnssecOK: ttl & 0x8000 != 0,
            reservedFlags: UInt16(truncatingIfNeeded: ttl) & 0x7FFF,
            options: options
        )
    }

    /// Appends the message in wire form to `buffer`.
    ///
    /// - Parameters:
    ///   - buffer: The buffer to append to; the message starts at its writer index.
    ///   - compress: Whether to compress names where RFC 1035 and RFC 3597 allow; on by default.
    /// - Throws: ``DNSWireError`` when the message cannot be represented: a response code above 15
    ///   without OPT, a TXT string or message over its size limit.
    public func encode(into buffer: inout ByteBuffer, compress: Bool = true) throws(DNSWireError) {
        guard edns != nil || header.responseCode.rawValue < 16 else {
            throw DNSWireError(.responseCodeNeedsEDNS, detail: "\(header.responseCode) needs an OPT record")
        }
        let additionalCount = additionals.count + (edns == nil ? 0 : 1)
        for count in [questions.count, answers.count, authorities.count, additionalCount] where count > Int(UInt16.max)
        {
            throw DNSWireError(.messageTooLarge, detail: "\(count) entries in one section")
        }
        var writer = DNSWireWriter(buffer: buffer, compress: compress)
        buffer = ByteBuffer()  // Let the writer hold the only reference, so it never copies on write.
        writer.buffer.writeInteger(header.id)
        writer.buffer.writeInteger(header.flags)
        writer.buffer.writeInteger(UInt16(questions.count))
        writer.buffer.writeInteger(UInt16(answers.count))
        writer.buffer.writeInteger(UInt16(authorities.count))
        writer.buffer.writeInteger(UInt16(additionalCount))
        for question in questions {
            writer.writeName(question.name, compress: true)
            writer.buffer.writeInteger(question.type.rawValue)
            writer.buffer.writeInteger(question.class.rawValue)
        }
        do throws(DNSWireError) {
            for record in answers { try Self.encode(record, into: &writer) }
            for record in authorities { try Self.encode(record, into: &writer) }
            for record in additionals { try Self.encode(record, into: &writer) }
            if let edns {
                writer.buffer.writeInteger(UInt8(0))
                writer.buffer.writeInteger(DNSRecordType.opt.rawValue)
                writer.buffer.writeInteger(edns.udpPayloadSize)
                writer.buffer.writeInteger(edns.ttlField(extendedRCode: header.responseCode.extendedBits))
                let lengthIndex = writer.reserveLength()
                for option in edns.options {
                    guard option.data.count <= Int(UInt16.max) else {
                        throw DNSWireError(.messageTooLarge, offset: writer.offset, detail: "EDNS option too long")
                    }
                    writer.buffer.writeInteger(option.code.rawValue)
                    writer.buffer.writeInteger(UInt16(option.data.count))
                    writer.buffer.writeBytes(option.data)
                }
                try writer.patchLength(at: lengthIndex)
            }
            guard writer.offset <= Int(UInt16.max) else {
                throw DNSWireError(.messageTooLarge, detail: "\(writer.offset) octets")
            }
        } catch {
            writer.buffer.moveWriterIndex(to: writer.base)
            buffer = writer.buffer
            throw error
        }
        buffer = writer.buffer
    }

    /// Returns the message in wire form in a new buffer.
    ///
    /// - Parameter compress: Whether to compress names where allowed; on by default.
    /// - Throws: ``DNSWireError`` as ``encode(into:compress:)`` does.
    public func encoded(compress: Bool = true) throws(DNSWireError) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.reserveCapacity(512)
        try encode(into: &buffer, compress: compress)
        return buffer
    }

    private static func encode(_ record: DNSResourceRecord, into writer: inout DNSWireWriter) throws(DNSWireError) {
        writer.writeName(record.name, compress: true)
        writer.buffer.writeInteger(record.type.rawValue)
        writer.buffer.writeInteger(record.class.rawValue)
        writer.buffer.writeInteger(record.ttl)
        let lengthIndex = writer.reserveLength()
        try record.rdata.encode(type: record.type, into: &writer)
        try writer.patchLength(at: lengthIndex)
    }
}
