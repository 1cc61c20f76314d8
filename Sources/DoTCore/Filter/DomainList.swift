/// One named list of domains to block (and, in Adblock-style lists, exceptions to allow), read from
/// the formats people already have:
///
/// - hosts files: `0.0.0.0 ads.example` or `127.0.0.1 ads.example tracker.example` (the address is
///   ignored; `localhost` and the like are skipped);
/// - plain lists: one domain per line;
/// - Adblock-style rules: `||ads.example^`, exceptions `@@||ok.example^`; rules with options (`$…`) or
///   paths are not domain rules and are reported.
///
/// A name blocks its subdomains too; `*.example.com` blocks only the subdomains. Names compare without
/// regard to case. Comments (`#`, `!`), blank lines and `[Adblock …]` headers are skipped; a line that
/// cannot be read is counted, and the first few are kept with their line numbers for the log.
public struct DomainList: Sendable {
    /// The list's name, in logs and metrics.
    public let name: String
    /// The names it blocks.
    public let blocked: DomainNameSet
    /// The names it allows whatever another list blocks (Adblock `@@` exceptions).
    public let allowed: DomainNameSet
    /// Lines that could not be read.
    public let rejectedLineCount: Int
    /// The first of them, with their numbers (from 1), at most ``keptRejectedLines``.
    public let rejectedLines: [(line: Int, text: String)]

    /// How many unreadable lines a list keeps for the log.
    public static let keptRejectedLines = 5

    /// Names in hosts files that are not blocking entries.
    static let hostsNames: Set<String> = [
        "localhost", "localhost.localdomain", "local", "broadcasthost", "ip6-localhost", "ip6-loopback",
        "ip6-localnet", "ip6-mcastprefix", "ip6-allnodes", "ip6-allrouters", "ip6-allhosts", "0.0.0.0",
    ]

    /// Reads `text`, a list in any of the formats above (they may be mixed).
    ///
    /// - Parameters:
    ///   - text: The list's content.
    ///   - name: Its name in logs and metrics.
    public init(parsing text: String, name: String) {
        var text = text
        self = text.withUTF8 { DomainList(parsing: UnsafeRawBufferPointer($0), name: name) }
    }

    /// Reads `bytes`, a list's content in UTF-8, as ``init(parsing:name:)`` does: octet by octet, so a
    /// list of a million lines reads in about a second.
    public init(parsing bytes: UnsafeRawBufferPointer, name: String) {
        var blocked = DomainNameSetBuilder()
        var allowed = DomainNameSetBuilder()
        var rejected: [(Int, String)] = []
        var rejectedCount = 0
        var number = 0
        var lineStart = 0
        while lineStart <= bytes.count {
            var lineEnd = lineStart
            while lineEnd < bytes.count, bytes[lineEnd] != 0x0A { lineEnd += 1 }
            number += 1
            defer { lineStart = lineEnd + 1 }
            var line = Self.trimmed(UnsafeRawBufferPointer(rebasing: bytes[lineStart..<lineEnd]))
            guard let first = line.first, first != UInt8(ascii: "#"), first != UInt8(ascii: "!"),
                first != UInt8(ascii: "[")
            else { continue }
            let ok: Bool
            if Self.hasPrefix(line, "@@||") {
                ok = Self.addAdblock(UnsafeRawBufferPointer(rebasing: line[4...]), to: &allowed)
            } else if Self.hasPrefix(line, "||") {
                ok = Self.addAdblock(UnsafeRawBufferPointer(rebasing: line[2...]), to: &blocked)
            } else {
                // Drop a trailing comment, then: hosts (an address and names) or one plain name.
                if let hash = line.firstIndex(of: UInt8(ascii: "#")) {
                    line = Self.trimmed(UnsafeRawBufferPointer(rebasing: line[..<hash]))
                }
                ok = Self.addFields(line, to: &blocked)
            }
            if !ok {
                rejectedCount += 1
                if rejected.count < Self.keptRejectedLines {
                    rejected.append((number, String(decoding: line.prefix(120), as: UTF8.self)))
                }
            }
        }
        self.name = name
        self.blocked = blocked.build()
        self.allowed = allowed.build()
        self.rejectedLineCount = rejectedCount
        self.rejectedLines = rejected
    }

    /// A hosts line (an address, then names) or a plain one (one name).
    private static func addFields(_ line: UnsafeRawBufferPointer, to builder: inout DomainNameSetBuilder) -> Bool {
        var fields: [Range<Int>] = []
        var index = 0
        while index < line.count {
            while index < line.count, line[index] == 0x20 || line[index] == 0x09 { index += 1 }
            let start = index
            while index < line.count, line[index] != 0x20, line[index] != 0x09 { index += 1 }
            if index > start { fields.append(start..<index) }
        }
        if fields.count == 1 { return addPlain(UnsafeRawBufferPointer(rebasing: line[fields[0]]), to: &builder) }
        guard fields.count >= 2, looksLikeAddress(UnsafeRawBufferPointer(rebasing: line[fields[0]])) else {
            return false
        }
        for field in fields.dropFirst() {
            let name = UnsafeRawBufferPointer(rebasing: line[field])
            guard isHostsName(name) || builder.add(wire: name) else { return false }
        }
        return true
    }

    /// Whether `name` is one of ``hostsNames``, in any case.
    private static func isHostsName(_ name: UnsafeRawBufferPointer) -> Bool {
        hostsNameOctets.contains { entry in
            entry.count == name.count && zip(entry, name).allSatisfy { $0 == DNSName.lowercase($1) }
        }
    }

    private static let hostsNameOctets: [[UInt8]] = hostsNames.map { Array($0.utf8) }

    /// `name^`, with nothing after the `^` (or the end).
    private static func addAdblock(_ rule: UnsafeRawBufferPointer, to builder: inout DomainNameSetBuilder) -> Bool {
        var name = rule
        if name.last == UInt8(ascii: "^") { name = UnsafeRawBufferPointer(rebasing: name.dropLast()) }
        guard !name.contains(where: { $0 == UInt8(ascii: "^") || $0 == UInt8(ascii: "$") || $0 == UInt8(ascii: "/") })
        else { return false }
        return addPlain(name, to: &builder)
    }

    /// `name` or `*.name`.
    private static func addPlain(_ text: UnsafeRawBufferPointer, to builder: inout DomainNameSetBuilder) -> Bool {
        if hasPrefix(text, "*.") {
            return builder.add(wire: UnsafeRawBufferPointer(rebasing: text[2...]), subdomainsOnly: true)
        }
        return builder.add(wire: text)
    }

    /// Whether `field` looks like the IPv4 or IPv6 address a hosts line starts with: digits and dots,
    /// or hex digits and colons.
    private static func looksLikeAddress(_ field: UnsafeRawBufferPointer) -> Bool {
        if field.contains(UInt8(ascii: ":")) {
            return field.allSatisfy { byte in
                byte == UInt8(ascii: ":") || byte == UInt8(ascii: ".") || (byte >= 0x30 && byte <= 0x39)
                    || (byte | 0x20 >= 0x61 && byte | 0x20 <= 0x66)
            }
        }
        return field.count >= 7 && field.allSatisfy { $0 == UInt8(ascii: ".") || ($0 >= 0x30 && $0 <= 0x39) }
    }

    private static func hasPrefix(_ bytes: UnsafeRawBufferPointer, _ prefix: StaticString) -> Bool {
        guard bytes.count >= prefix.utf8CodeUnitCount else { return false }
        return prefix.withUTF8Buffer { prefix in prefix.indices.allSatisfy { bytes[$0] == prefix[$0] } }
    }

    private static func trimmed(_ bytes: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer {
        var start = 0
        var end = bytes.count
        func isSpace(_ byte: UInt8) -> Bool { byte == 0x20 || byte == 0x09 || byte == 0x0D }
        while start < end, isSpace(bytes[start]) { start += 1 }
        while end > start, isSpace(bytes[end - 1]) { end -= 1 }
        return UnsafeRawBufferPointer(rebasing: bytes[start..<end])
    }
}
