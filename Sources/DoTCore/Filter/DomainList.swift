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
        var blocked = DomainNameSetBuilder()
        var allowed = DomainNameSetBuilder()
        var rejected: [(Int, String)] = []
        var rejectedCount = 0
        var number = 0
        for rawLine in text.split(separator: "\n", omittingEmptySubsequences: false) {
            number += 1
            let line = rawLine.trimmingWhitespace()
            guard !line.isEmpty, line.first != "#", line.first != "!", line.first != "[" else { continue }
            let ok: Bool
            if line.hasPrefix("@@||") {
                ok = Self.addAdblock(line.dropFirst(4), to: &allowed)
            } else if line.hasPrefix("||") {
                ok = Self.addAdblock(line.dropFirst(2), to: &blocked)
            } else {
                // Drop a trailing comment, then: hosts (address and names) or one plain name.
                let content = (line.firstIndex(of: "#").map { line[..<$0] } ?? line).trimmingWhitespace()
                let fields = content.split(whereSeparator: { $0 == " " || $0 == "\t" })
                if fields.count >= 2, Self.isAddress(fields[0]) {
                    ok = fields.dropFirst().allSatisfy { field in
                        Self.hostsNames.contains(field.lowercased()) || blocked.add(field)
                    }
                } else if fields.count == 1 {
                    ok = Self.addPlain(fields[0], to: &blocked)
                } else {
                    ok = false
                }
            }
            if !ok {
                rejectedCount += 1
                if rejected.count < Self.keptRejectedLines { rejected.append((number, String(line.prefix(120)))) }
            }
        }
        self.name = name
        self.blocked = blocked.build()
        self.allowed = allowed.build()
        self.rejectedLineCount = rejectedCount
        self.rejectedLines = rejected
    }

    /// `||name^`, with nothing after the `^` (or the end).
    private static func addAdblock(_ rule: Substring, to builder: inout DomainNameSetBuilder) -> Bool {
        var name = rule
        if name.hasSuffix("^") { name = name.dropLast() }
        guard !name.contains("^"), !name.contains("$"), !name.contains("/") else { return false }
        return addPlain(name, to: &builder)
    }

    /// `name` or `*.name`.
    private static func addPlain(_ text: Substring, to builder: inout DomainNameSetBuilder) -> Bool {
        if text.hasPrefix("*.") { return builder.add(text.dropFirst(2), subdomainsOnly: true) }
        return builder.add(text)
    }

    /// Whether `field` is an IPv4 or IPv6 address, as a hosts line starts.
    private static func isAddress(_ field: Substring) -> Bool {
        IPv4Address(String(field)) != nil || (field.contains(":") && IPv6Address(String(field)) != nil)
    }
}

extension Substring {
    /// Without spaces, tabs and carriage returns at either end.
    fileprivate func trimmingWhitespace() -> Substring {
        var result = self
        while let first = result.first, first == " " || first == "\t" || first == "\r" { result = result.dropFirst() }
        while let last = result.last, last == " " || last == "\t" || last == "\r" { result = result.dropLast() }
        return result
    }
}
