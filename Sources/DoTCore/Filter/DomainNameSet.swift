/// A set of domain names that matches a name and its subdomains, built once and then only read, in
/// little memory and without allocating on a lookup.
///
/// The names sit back to back in one byte array, each as its length and its lower-cased wire form
/// without the root label; an open-addressing table of 64-bit slots (a hash of the name in the high
/// half, its offset in the low half) finds them. A lookup hashes each suffix of the query's name, from
/// the rightmost label leftwards, so every suffix costs only its new label, and compares the octets of
/// the slot it finds: a hash collision costs a comparison, never a wrong match. What a name costs in
/// memory and time: Docs/performance.md, "Filter lists".
public struct DomainNameSet: Sendable {
    /// Entries: a flags octet, a length octet, then the name's wire octets (labels with their lengths;
    /// up to 254 octets, so the length has an octet of its own).
    private let storage: [UInt8]
    /// Open addressing, linear probing; 0 is an empty slot.
    private let table: [UInt64]
    /// A Bloom filter of the names' hashes, two bits a name in eight: a suffix the set cannot hold is
    /// turned away here, in a bit array a few hundred times smaller than the table that stays in the
    /// processor's caches, instead of by a probe into the table that does not.
    private let bloom: [UInt64]
    /// How many names the set holds.
    public let count: Int

    /// The flag on a name that matches its subdomains only (`*.example.com`), not itself.
    static let subdomainsOnly: UInt8 = 0x80

    /// The octets before an entry's name: its flags and its length.
    static let headerSize = 2

    /// An empty set.
    public init() {
        self.storage = []
        self.table = [0]
        self.bloom = [0]
        self.count = 0
    }

    init(storage: [UInt8], table: [UInt64], bloom: [UInt64], count: Int) {
        self.storage = storage
        self.table = table
        self.bloom = bloom
        self.count = count
    }

    /// The octets of the set's storage, table and filter, for the memory a list costs.
    public var footprint: Int { storage.capacity + table.capacity * 8 + bloom.capacity * 8 }

    /// The two bits of `hash` in a Bloom filter of `words` 64-bit words (a power of two).
    @inline(__always)
    static func bloomBits(of hash: UInt64, words: Int) -> (word1: Int, bit1: UInt64, word2: Int, bit2: UInt64) {
        let mask = words * 64 - 1
        let first = Int(truncatingIfNeeded: hash >> 40) & mask
        let second = Int(truncatingIfNeeded: (hash >> 20) ^ (hash >> 52)) & mask
        return (first >> 6, 1 << UInt64(first & 63), second >> 6, 1 << UInt64(second & 63))
    }

    /// Whether the set holds `name` (text, any case), or a name it is a subdomain of.
    public func matches(_ name: String) -> Bool {
        var text = name
        var wire: [UInt8] = []
        guard text.withUTF8({ Self.appendWireForm(of: UnsafeRawBufferPointer($0), to: &wire) }) else { return false }
        return wire.withUnsafeBytes { match($0) != nil }
    }

    /// Whether the set holds the name in `wireName` (its wire octets without the root label, any
    /// case, as a query carries it), or a name it is a subdomain of. Allocates nothing.
    public func matches(wireName: UnsafeRawBufferPointer) -> Bool {
        match(wireName) != nil
    }

    /// The offset of the set's entry that `name` (wire octets without the root label, any case) is or
    /// is a subdomain of; `nil` when none.
    ///
    /// It walks the labels from the right: each suffix's hash extends the previous one by a label.
    func match(_ name: UnsafeRawBufferPointer) -> Int? {
        guard count > 0 else { return nil }
        // The label starts, without allocating: at most 128 of them, on the stack.
        return withUnsafeTemporaryAllocation(of: Int.self, capacity: 128) { starts -> Int? in
            var labels = 0
            var position = 0
            while position < name.count, labels < 128 {
                let length = Int(name[position])
                guard length > 0, length < 64, position + 1 + length <= name.count else { return nil }
                starts[labels] = position
                labels += 1
                position += 1 + length
            }
            guard position == name.count else { return nil }
            var hash = Self.seed
            var index = labels - 1
            while index >= 0 {
                let start = starts[index]
                let end = index + 1 < labels ? starts[index + 1] : name.count
                hash = Self.extend(hash, with: UnsafeRawBufferPointer(rebasing: name[start..<end]))
                let suffix = UnsafeRawBufferPointer(rebasing: name[start...])
                if let entry = find(suffix, hash: hash, isWholeName: index == 0) { return entry }
                index -= 1
            }
            return nil
        }
    }

    /// The entry holding `suffix`, if its flags let it match here: a subdomains-only entry does not
    /// match the whole name.
    private func find(_ suffix: UnsafeRawBufferPointer, hash: UInt64, isWholeName: Bool) -> Int? {
        let maybe = bloom.withUnsafeBufferPointer { bloom -> Bool in
            let bits = Self.bloomBits(of: hash, words: bloom.count)
            return bloom[bits.word1] & bits.bit1 != 0 && bloom[bits.word2] & bits.bit2 != 0
        }
        guard maybe else { return nil }
        let mask = table.count - 1
        var slot = Int(truncatingIfNeeded: hash) & mask
        let tag = hash & 0xFFFF_FFFF_0000_0000
        return storage.withUnsafeBufferPointer { storage -> Int? in
            table.withUnsafeBufferPointer { table -> Int? in
                while true {
                    let value = table[slot]
                    if value == 0 { return nil }
                    if value & 0xFFFF_FFFF_0000_0000 == tag {
                        let offset = Int(value & 0xFFFF_FFFF) - 1
                        let flags = storage[offset]
                        let length = Int(storage[offset + 1])
                        if length == suffix.count,
                            Self.equalLowercased(
                                UnsafeRawBufferPointer(
                                    rebasing: UnsafeRawBufferPointer(storage)[(offset + Self.headerSize)...]
                                ),
                                suffix
                            )
                        {
                            if flags & Self.subdomainsOnly != 0 && isWholeName { return nil }
                            return offset
                        }
                    }
                    slot = (slot + 1) & mask
                }
            }
        }
    }

    /// The name of the entry at `offset`, in text, for logs.
    func name(at offset: Int) -> String {
        let length = Int(storage[offset + 1])
        var labels: [String] = []
        var position = offset + Self.headerSize
        while position < offset + Self.headerSize + length {
            let labelLength = Int(storage[position])
            labels.append(String(decoding: storage[(position + 1)..<(position + 1 + labelLength)], as: UTF8.self))
            position += 1 + labelLength
        }
        return (storage[offset] & Self.subdomainsOnly != 0 ? "*." : "") + labels.joined(separator: ".")
    }

    // MARK: Hashing

    static let seed: UInt64 = 0xcbf2_9ce4_8422_2325

    /// FNV-1a over the lower-cased octets of a label (its length octet included).
    @inline(__always)
    static func extend(_ hash: UInt64, with label: UnsafeRawBufferPointer) -> UInt64 {
        var hash = hash
        for byte in label {
            hash ^= UInt64(DNSName.lowercase(byte))
            hash &*= 0x0000_0100_0000_01B3
        }
        return hash
    }

    /// The hash of a whole name (wire octets without the root label) as ``match(_:)`` computes it:
    /// its labels from the right.
    static func hash(ofWireName name: UnsafeRawBufferPointer) -> UInt64 {
        withUnsafeTemporaryAllocation(of: Int.self, capacity: 128) { starts in
            var labels = 0
            var position = 0
            while position < name.count, labels < 128 {
                starts[labels] = position
                labels += 1
                position += 1 + Int(name[position])
            }
            var hash = seed
            for index in stride(from: labels - 1, through: 0, by: -1) {
                let end = index + 1 < labels ? starts[index + 1] : name.count
                hash = extend(hash, with: UnsafeRawBufferPointer(rebasing: name[starts[index]..<end]))
            }
            return hash
        }
    }

    /// Whether the first `rhs.count` octets of `stored` (lower case already) equal `rhs`, whose case
    /// is ignored.
    @inline(__always)
    static func equalLowercased(_ stored: UnsafeRawBufferPointer, _ rhs: UnsafeRawBufferPointer) -> Bool {
        guard stored.count >= rhs.count else { return false }
        var index = 0
        while index < rhs.count {
            if stored[index] != DNSName.lowercase(rhs[index]) { return false }
            index += 1
        }
        return true
    }

    /// Appends `text` (a name's UTF-8 octets: `ads.example.com`, a trailing dot allowed) to `out` as
    /// lower-cased wire octets without the root label. Letters, digits, hyphen and underscore only:
    /// what lists hold; anything else is a mistake. Returns `false`, with `out` as it was, when `text`
    /// is not such a name.
    static func appendWireForm(of text: UnsafeRawBufferPointer, to out: inout [UInt8]) -> Bool {
        let start = out.count
        var end = text.count
        if end > 0, text[end - 1] == UInt8(ascii: ".") { end -= 1 }
        guard end > 0, end <= 253 else { return false }
        var labelStart = out.count
        out.append(0)  // the first label's length
        var index = 0
        while index < end {
            let byte = DNSName.lowercase(text[index])
            if byte == UInt8(ascii: ".") {
                let length = out.count - labelStart - 1
                guard length > 0, length < 64 else { break }
                out[labelStart] = UInt8(length)
                labelStart = out.count
                out.append(0)
            } else if (byte >= 0x61 && byte <= 0x7A) || (byte >= 0x30 && byte <= 0x39) || byte == 0x2D || byte == 0x5F {
                out.append(byte)
            } else {
                break
            }
            index += 1
        }
        let lastLength = out.count - labelStart - 1
        guard index == end, lastLength > 0, lastLength < 64 else {
            out.removeSubrange(start...)
            return false
        }
        out[labelStart] = UInt8(lastLength)
        return true
    }
}
