import NIOCore

/// Writes one DNS message into a `ByteBuffer`, compressing names through a suffix table.
///
/// The table's keys are ``DNSName`` values, whose equality ignores case, so a suffix is found whatever
/// case it was first written in. Only offsets below 0x4000 can be pointed at.
struct DNSWireWriter {
    var buffer: ByteBuffer
    let base: Int
    private var suffixes: [DNSName: Int]
    private let compressionEnabled: Bool

    init(buffer: ByteBuffer, compress: Bool) {
        self.buffer = buffer
        self.base = buffer.writerIndex
        self.suffixes = [:]
        self.compressionEnabled = compress
    }

    var offset: Int { buffer.writerIndex - base }

    mutating func writeName(_ name: DNSName, compress: Bool) {
        let wire = name.wireBytes
        var index = 0
        while wire[index] != 0 {
            if compressionEnabled {
                let suffix = DNSName(uncheckedWireBytes: Array(wire[index...]))
                if compress, let target = suffixes[suffix] {
                    buffer.writeBytes(wire[..<index])
                    buffer.writeInteger(UInt16(0xC000) | UInt16(target))
                    return
                }
                let here = offset + index
                if here < 0x4000, suffixes[suffix] == nil { suffixes[suffix] = here }
            }
            index += 1 + Int(wire[index])
        }
        buffer.writeBytes(wire[...])
    }

    /// Reserves a 16-bit length field and returns its absolute index, to be filled by ``patchLength(at:)``.
    mutating func reserveLength() -> Int {
        let index = buffer.writerIndex
        buffer.writeInteger(UInt16(0))
        return index
    }

    /// Fills a reserved length field with the number of octets written after it.
    mutating func patchLength(at index: Int) throws(DNSWireError) {
        let length = buffer.writerIndex - index - 2
        guard length <= Int(UInt16.max) else {
            throw DNSWireError(.messageTooLarge, offset: index - base, detail: "RDATA of \(length) octets")
        }
        buffer.setInteger(UInt16(length), at: index)
    }
}
