/// Builds a ``DomainNameSet`` from names added one by one.
public struct DomainNameSetBuilder: Sendable {
    private var storage: [UInt8] = []
    private var offsets: [UInt32] = []

    /// An empty builder.
    public init() {}

    /// How many names were added (duplicates included).
    public var count: Int { offsets.count }

    /// Adds `name` (text, any case, a trailing dot allowed), and with `subdomainsOnly` its subdomains
    /// but not the name itself (`*.example.com`).
    ///
    /// - Returns: `false`, with nothing added, when `name` is not a usable domain name.
    @discardableResult
    public mutating func add(_ name: some StringProtocol, subdomainsOnly: Bool = false) -> Bool {
        var text = String(name)
        return text.withUTF8 { add(wire: UnsafeRawBufferPointer($0), subdomainsOnly: subdomainsOnly) }
    }

    /// ``add(_:subdomainsOnly:)`` for a name given as its text's UTF-8 octets: written straight into
    /// the storage in lower-cased wire form, with no array of its own.
    @discardableResult
    mutating func add(wire text: UnsafeRawBufferPointer, subdomainsOnly: Bool = false) -> Bool {
        let entry = storage.count
        guard entry + text.count + 3 < UInt32.max else { return false }
        storage.append(subdomainsOnly ? DomainNameSet.subdomainsOnly : 0)
        storage.append(0)  // the length, set below
        guard DomainNameSet.appendWireForm(of: text, to: &storage) else {
            storage.removeLast(DomainNameSet.headerSize)
            return false
        }
        storage[entry + 1] = UInt8(storage.count - entry - DomainNameSet.headerSize)
        offsets.append(UInt32(entry))
        return true
    }

    /// The set, with each name once (the first spelling of a name wins; a name given both alone and as
    /// `*.name` blocks the name and its subdomains, whichever came first).
    public func build() -> DomainNameSet {
        // At most half full, a power of two so a slot is a mask away.
        var size = 1
        while size < max(2, offsets.count * 2) { size <<= 1 }
        var table = [UInt64](repeating: 0, count: size)
        // Eight bits a name (a power of two of 64-bit words), two set for each.
        var words = 1
        while words * 64 < max(64, offsets.count * 8) { words <<= 1 }
        var bloom = [UInt64](repeating: 0, count: words)
        var kept: [UInt8] = []
        kept.reserveCapacity(storage.count)
        var count = 0
        let mask = size - 1
        storage.withUnsafeBytes { storage in
            for offset in offsets {
                let start = Int(offset)
                let flags = storage[start]
                let length = Int(storage[start + 1])
                let nameStart = start + DomainNameSet.headerSize
                let wire = UnsafeRawBufferPointer(rebasing: storage[nameStart..<(nameStart + length)])
                let hash = DomainNameSet.hash(ofWireName: wire)
                let tag = hash & 0xFFFF_FFFF_0000_0000
                var slot = Int(truncatingIfNeeded: hash) & mask
                var duplicate = false
                while table[slot] != 0 {
                    if table[slot] & 0xFFFF_FFFF_0000_0000 == tag {
                        let other = Int(table[slot] & 0xFFFF_FFFF) - 1
                        if Int(kept[other + 1]) == length,
                            kept.withUnsafeBytes({ kept in
                                DomainNameSet.equalLowercased(
                                    UnsafeRawBufferPointer(rebasing: kept[(other + DomainNameSet.headerSize)...]),
                                    wire
                                )
                            })
                        {
                            duplicate = true
                            // The name itself covers its subdomains too: `a.example` after
                            // `*.a.example` widens the entry rather than being dropped.
                            if flags & DomainNameSet.subdomainsOnly == 0 {
                                kept[other] &= ~DomainNameSet.subdomainsOnly
                            }
                            break
                        }
                    }
                    slot = (slot + 1) & mask
                }
                guard !duplicate else { continue }
                table[slot] = tag | UInt64(kept.count + 1)
                let bits = DomainNameSet.bloomBits(of: hash, words: words)
                bloom[bits.word1] |= bits.bit1
                bloom[bits.word2] |= bits.bit2
                kept.append(flags)
                kept.append(UInt8(length))
                kept.append(contentsOf: wire)
                count += 1
            }
        }
        kept.shrinkCapacity()
        return DomainNameSet(storage: kept, table: table, bloom: bloom, count: count)
    }
}

extension Array {
    /// Drops the spare capacity, so a long-lived array holds only what it needs.
    fileprivate mutating func shrinkCapacity() {
        guard capacity > count else { return }
        self = Array(unsafeUninitializedCapacity: count) { buffer, initialized in
            for (index, element) in enumerated() { (buffer.baseAddress! + index).initialize(to: element) }
            initialized = count
        }
    }
}
