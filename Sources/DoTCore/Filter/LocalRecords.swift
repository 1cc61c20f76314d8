import NIOCore

/// Names answered locally, with AA set and never forwarded: `router.lan` on a home network.
///
/// Read from lines of three kinds (comments after `#`, blank lines skipped):
///
/// - `name TYPE value`, with TYPE one of A, AAAA, CNAME, TXT (the rest of the line, quotes removed) and
///   PTR: `router.lan A 192.168.1.1`;
/// - hosts-file lines, `192.168.1.1 router.lan router`: A or AAAA records, and the PTR record of the
///   address for the first name;
/// - `zone NAME`: a local zone. A name under it that is not listed gets NXDOMAIN, so that `*.lan`
///   does not leak upstream.
///
/// A listed name asked for a type it has no record of gets no data (NOERROR, empty); a CNAME is
/// followed within the local names.
public struct LocalRecords: Sendable {
    private var records: [DNSName: [DNSResourceRecord]] = [:]
    private var zones: [DNSName] = []
    /// The listed names and the zones, so that a query for anything else (nearly every query) is
    /// turned away by one lookup that allocates nothing, before the query is decoded; `nil` when a
    /// listed name has characters the set does not hold, and every query is decoded.
    private var candidates: DomainNameSet?
    /// The TTL of the local answers.
    public let ttl: UInt32
    /// Lines that could not be read, with their numbers (the first few).
    public private(set) var rejectedLines: [(line: Int, text: String)] = []
    /// How many lines could not be read.
    public private(set) var rejectedLineCount = 0

    /// How many names are listed.
    public var count: Int { records.count }

    /// Whether it declares a local zone.
    public var hasZones: Bool { !zones.isEmpty }

    /// Reads `text`.
    ///
    /// - Parameters:
    ///   - text: The records, one a line.
    ///   - ttl: The TTL of the answers; an hour by default.
    public init(parsing text: String, ttl: UInt32 = 3600) {
        self.ttl = ttl
        var number = 0
        for rawLine in text.split(separator: "\n", omittingEmptySubsequences: false) {
            number += 1
            let line = (rawLine.firstIndex(of: "#").map { rawLine[..<$0] } ?? rawLine)
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" })
            guard !fields.isEmpty else { continue }
            if !add(fields, line: line) {
                rejectedLineCount += 1
                if rejectedLines.count < DomainList.keptRejectedLines {
                    rejectedLines.append((number, String(line.prefix(120))))
                }
            }
        }
        var builder = DomainNameSetBuilder()
        let representable = (Array(records.keys) + zones).allSatisfy { builder.add($0.description) }
        candidates = representable ? builder.build() : nil
    }

    private mutating func add(_ fields: [Substring], line: Substring) -> Bool {
        if fields.count == 2, fields[0].lowercased() == "zone" {
            // The root as a local zone would answer every name NXDOMAIN.
            guard let zone = try? DNSName(parsing: String(fields[1])), zone != .root else { return false }
            zones.append(zone.lowercased())
            return true
        }
        // A hosts line: an address, then names.
        if fields.count >= 2, IPv4Address(String(fields[0])) != nil || IPv6Address(String(fields[0])) != nil {
            let rdata: DNSRData =
                IPv4Address(String(fields[0])).map { .a($0) } ?? .aaaa(IPv6Address(String(fields[0]))!)
            var names: [DNSName] = []
            for field in fields.dropFirst() {
                guard let name = try? DNSName(parsing: String(field)) else { return false }
                names.append(name)
            }
            for name in names { append(DNSResourceRecord(name: name, ttl: ttl, rdata: rdata)) }
            if let reverse = Self.reverseName(of: rdata) {
                append(DNSResourceRecord(name: reverse, ttl: ttl, rdata: .ptr(names[0])))
            }
            return true
        }
        guard fields.count >= 3, let name = try? DNSName(parsing: String(fields[0])) else { return false }
        let value = String(fields[2])
        let rdata: DNSRData?
        switch fields[1].uppercased() {
        case "A": rdata = IPv4Address(value).map { .a($0) }
        case "AAAA": rdata = IPv6Address(value).map { .aaaa($0) }
        case "CNAME": rdata = (try? DNSName(parsing: value)).map { .cname($0) }
        case "PTR": rdata = (try? DNSName(parsing: value)).map { .ptr($0) }
        case "TXT":
            // The rest of the line after the type, quotes removed.
            var text = line[fields[1].endIndex...]
            while let first = text.first, " \t\r\"".contains(first) { text = text.dropFirst() }
            while let last = text.last, " \t\r\"".contains(last) { text = text.dropLast() }
            rdata = text.utf8.count <= 255 ? .txt([Array(text.utf8)]) : nil
        default: rdata = nil
        }
        guard fields[1].uppercased() == "TXT" || fields.count == 3, let rdata else { return false }
        append(DNSResourceRecord(name: name, ttl: ttl, rdata: rdata))
        return true
    }

    private mutating func append(_ record: DNSResourceRecord) {
        records[record.name.lowercased(), default: []].append(record)
    }

    /// `4.3.2.1.in-addr.arpa.` for 1.2.3.4, and the nibble form under `ip6.arpa.` for an IPv6 address.
    static func reverseName(of rdata: DNSRData) -> DNSName? {
        switch rdata {
        case .a(let address):
            let octets = withUnsafeBytes(of: address.rawValue.bigEndian) { Array($0) }
            return try? DNSName(parsing: octets.reversed().map(String.init).joined(separator: ".") + ".in-addr.arpa.")
        case .aaaa(let address):
            let nibbles = address.octets.flatMap { [$0 >> 4, $0 & 0x0F] }
            return try? DNSName(
                parsing: nibbles.reversed().map { String($0, radix: 16) }.joined(separator: ".") + ".ip6.arpa."
            )
        default:
            return nil
        }
    }

    /// The local answer to `query`, or `nil` when the name is neither listed nor under a local zone.
    public func answer(_ query: ParsedDNSMessage) -> ByteBuffer? {
        guard let range = query.view.questionNameRange, range.count > 1,
            query.buffer.withUnsafeReadableBytes({ bytes in
                guard let candidates else { return true }
                return range.upperBound <= bytes.count
                    && candidates.matches(
                        wireName: UnsafeRawBufferPointer(rebasing: bytes[range.lowerBound..<(range.upperBound - 1)])
                    )
            })
        else { return nil }
        guard let message = try? DNSMessage(decoding: query.buffer), let question = message.questions.first else {
            return nil
        }
        let name = question.name.lowercased()
        let found = records[name]
        guard found != nil || zones.contains(where: { name.isSubdomain(of: $0) || name == $0 }) else { return nil }
        var reply = DNSMessage(header: message.header, questions: message.questions)
        reply.header.isResponse = true
        reply.header.isAuthoritativeAnswer = true
        reply.header.recursionAvailable = true
        reply.edns = message.edns.map { _ in EDNSRecord(udpPayloadSize: EDNSRecord.proxyUDPPayloadSize) }
        guard let found else {
            reply.header.responseCode = .nameError
            return try? reply.encoded()
        }
        // The records of the type asked for, following a CNAME through the local names (at most 8).
        var current = found
        var hops = 0
        while hops < 8 {
            if let cname = current.first(where: { $0.type == .cname }), question.type != .cname {
                reply.answers.append(cname)
                guard case .cname(let target) = cname.rdata, let next = records[target.lowercased()] else { break }
                current = next
                hops += 1
                continue
            }
            reply.answers += current.filter { $0.type == question.type }
            break
        }
        return try? reply.encoded()
    }
}
