import NIOCore

/// EDNS(0) padding for queries sent over TLS (RFC 7830, RFC 8467) and its removal from replies.
///
/// Padding hides the length of the name asked for. Queries are padded to a multiple of the block size
/// (128 octets, as RFC 8467 recommends for queries); a query without OPT gets one. Padding in a reply
/// is meaningless once the reply has left the TLS connection, so it is removed.
enum DoTQueryPadding {
    static let optionHeaderLength = 4
    static let optRecordFixedLength = 11

    /// Returns `message` with an OPT record whose padding makes the length a multiple of `blockSize`.
    ///
    /// Any padding already present is replaced. When the OPT record is not the last record (a TSIG
    /// follows it), the message is returned unchanged, because moving records would break signatures.
    static func pad(_ message: ByteBuffer, view: DNSMessageView, blockSize: Int) -> ByteBuffer {
        var out = ByteBufferAllocator().buffer(capacity: message.readableBytes + maximumGrowth(blockSize: blockSize))
        pad(message, view: view, blockSize: blockSize, into: &out)
        return out
    }

    /// Appends `message`, padded as ``pad(_:view:blockSize:)`` describes, to `out`: the transport
    /// builds the length prefix and the padded query in one buffer.
    static func pad(_ message: ByteBuffer, view: DNSMessageView, blockSize: Int, into out: inout ByteBuffer) {
        guard blockSize > 1, rebuild(message, view: view, blockSize: blockSize, into: &out) else {
            out.writeImmutableBuffer(message)
            return
        }
    }

    /// The most octets ``pad(_:view:blockSize:)`` adds to a message: an OPT record, a padding option
    /// header and up to a block less one of padding.
    static func maximumGrowth(blockSize: Int) -> Int {
        optRecordFixedLength + optionHeaderLength + max(0, blockSize - 1)
    }

    /// Removes the padding option from `message`, if it has one.
    ///
    /// When the padding is the last option of an OPT that ends the message (as upstreams write it), it
    /// is cut off in place: the writer index moves back, the RDLENGTH shrinks and the view keeps every
    /// offset but the length, so nothing is allocated or parsed again. Otherwise the OPT is rebuilt
    /// without it; a message that cannot be rebuilt is left as it is.
    static func stripPadding(_ message: inout ParsedDNSMessage) {
        let view = message.view
        guard let optOffset = view.optRecordOffset,
            let padding = optionRange(message.buffer, optOffset: optOffset, code: EDNSOptionCode.padding.rawValue)
        else { return }
        // The padding lies inside the RDATA, so when it ends the message it also ends the RDATA.
        let rdLengthAt = message.buffer.readerIndex + optOffset + optRecordFixedLength - 2
        if view.optRecordIsLast, padding.upperBound == message.buffer.writerIndex,
            let rdLength = message.buffer.getInteger(at: rdLengthAt, as: UInt16.self)
        {
            message.buffer.moveWriterIndex(to: padding.lowerBound)
            message.buffer.setInteger(rdLength - UInt16(padding.count), at: rdLengthAt)
            message.view.length -= padding.count
            return
        }
        var out = ByteBufferAllocator().buffer(capacity: message.buffer.readableBytes)
        if rebuild(message.buffer, view: view, blockSize: 0, into: &out), let rebuilt = try? ParsedDNSMessage(out) {
            message = rebuilt
        }
    }

    /// Finds an option in the OPT RDATA; returns its absolute range.
    private static func optionRange(_ message: ByteBuffer, optOffset: Int, code: UInt16) -> Range<Int>? {
        let rdStart = message.readerIndex + optOffset + optRecordFixedLength
        guard let rdLength = message.getInteger(at: rdStart - 2, as: UInt16.self) else { return nil }
        var found: Range<Int>?
        forEachOption(in: message, rdata: rdStart..<rdStart + Int(rdLength)) { optionCode, range in
            if found == nil, optionCode == code { found = range }
        }
        return found
    }

    /// Calls `body` with the code and absolute range (header included) of each option in the OPT
    /// RDATA at `rdata`; stops at an option that runs past the RDATA.
    static func forEachOption(in message: ByteBuffer, rdata: Range<Int>, _ body: (UInt16, Range<Int>) -> Void) {
        var position = rdata.lowerBound
        while position + optionHeaderLength <= rdata.upperBound,
            let (code, length) = message.getMultipleIntegers(at: position, as: (UInt16, UInt16).self)
        {
            let next = position + optionHeaderLength + Int(length)
            guard next <= rdata.upperBound else { return }
            body(code, position..<next)
            position = next
        }
    }

    /// Appends the message without its OPT to `out`, then an OPT with the old options (less padding)
    /// and, when `blockSize > 0`, padding to the block size. Returns false, with `out` untouched, when
    /// the message cannot be rebuilt.
    private static func rebuild(
        _ message: ByteBuffer,
        view: DNSMessageView,
        blockSize: Int,
        into out: inout ByteBuffer
    ) -> Bool {
        let base = message.readerIndex
        var udpSize = EDNSRecord.proxyUDPPayloadSize
        var ttl: UInt32 = 0
        // The options other than padding are copied from the message; none is buffered on the way.
        var rdata = 0..<0
        var optionsLength = 0
        var prefixLength = view.length
        var additionalCount = view.additionalCount
        if let optOffset = view.optRecordOffset {
            let start = base + optOffset
            guard
                let (_, _, klass, optTTL, rdLength) = message.getMultipleIntegers(
                    at: start,
                    as: (UInt8, UInt16, UInt16, UInt32, UInt16).self
                ),
                view.optRecordIsLast
            else { return false }
            udpSize = klass
            ttl = optTTL
            prefixLength = optOffset
            rdata = start + optRecordFixedLength..<start + optRecordFixedLength + Int(rdLength)
            guard rdata.upperBound <= message.writerIndex else { return false }
            forEachOption(in: message, rdata: rdata) { code, range in
                if code != EDNSOptionCode.padding.rawValue { optionsLength += range.count }
            }
        } else {
            guard additionalCount < UInt16.max else { return false }
            additionalCount += 1
        }
        guard let prefix = message.getSlice(at: base, length: prefixLength) else { return false }
        let unpadded = prefixLength + optRecordFixedLength + optionsLength
        var paddingLength = 0
        if blockSize > 0 {
            let withHeader = unpadded + optionHeaderLength
            paddingLength = (blockSize - withHeader % blockSize) % blockSize
        }
        let start = out.writerIndex
        out.reserveCapacity(minimumWritableBytes: unpadded + (blockSize > 0 ? optionHeaderLength + paddingLength : 0))
        out.writeImmutableBuffer(prefix)
        out.setInteger(additionalCount, at: start + 10)
        out.writeMultipleIntegers(UInt8(0), DNSRecordType.opt.rawValue, udpSize, ttl)
        let rdLength = optionsLength + (blockSize > 0 ? optionHeaderLength + paddingLength : 0)
        out.writeInteger(UInt16(rdLength))
        forEachOption(in: message, rdata: rdata) { code, range in
            guard code != EDNSOptionCode.padding.rawValue,
                let option = message.viewBytes(at: range.lowerBound, length: range.count)
            else { return }
            out.writeBytes(option)
        }
        if blockSize > 0 {
            out.writeMultipleIntegers(EDNSOptionCode.padding.rawValue, UInt16(paddingLength))
            out.writeRepeatingByte(0, count: paddingLength)
        }
        return true
    }
}
