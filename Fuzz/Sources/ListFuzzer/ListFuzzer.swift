import DoTCore
import NIOCore

/// One libFuzzer input, read as a filter list and as a local-records file.
///
/// Must hold: nothing crashes; the counts agree with the lines; every line that is one usable plain
/// name is blocked afterwards, in any case, with its subdomains, through the text and the wire lookup
/// alike; a local answer for a listed name parses, carries the question asked, and says authoritative.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzLists(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    let list = DomainList(parsing: bytes, name: "fuzz")
    let text = String(decoding: bytes, as: UTF8.self)
    // Lines by octet, as the parsers read them ("\r\n" is one Character to String).
    let byteLines = bytes.split(separator: 0x0A, omittingEmptySubsequences: false)
    precondition(list.rejectedLineCount <= byteLines.count)
    precondition(list.rejectedLines.count <= min(DomainList.keptRejectedLines, list.rejectedLineCount))
    for line in byteLines.prefix(64) {
        guard let token = DomainListFuzzing.plainName(line),
            !DomainListFuzzing.hostsNames.contains(token.lowercased())
        else { continue }
        var probe = DomainNameSetBuilder()
        guard probe.add(token) else { continue }
        precondition(list.blocked.matches(token), "a plain name in the list is not blocked: \(token)")
        precondition(list.blocked.matches(token.uppercased()), "case matters for \(token)")
        let sub = "x." + token
        if sub.utf8.count < 250 {
            precondition(list.blocked.matches(sub), "a subdomain of \(token) is not blocked")
            if let name = try? DNSName(parsing: sub) {
                // Without the root label, as a query carries it.
                name.wireBytes.dropLast().withUnsafeBytes {
                    precondition(list.blocked.matches(wireName: $0), "the wire lookup disagrees for \(sub)")
                }
            }
        }
    }

    let local = LocalRecords(parsing: text)
    precondition(local.rejectedLineCount <= byteLines.count)
    for line in byteLines.prefix(16) {
        guard let first = line.split(whereSeparator: { $0 == 0x20 || $0 == 0x09 }).first,
            let name = try? DNSName(parsing: String(decoding: first, as: UTF8.self))
        else { continue }
        for type in [DNSRecordType.a, .aaaa, .ptr, .txt, .cname] {
            guard
                let query = try? ParsedDNSMessage(
                    DNSMessage.query(name: name, type: type, id: 77, edns: nil).encoded()
                ),
                let answer = local.answer(query)
            else { continue }
            guard let reply = try? ParsedDNSMessage(answer) else {
                preconditionFailure("a local answer does not parse")
            }
            precondition(reply.answers(query), "a local answer does not answer its query")
            precondition(reply.view.flags & 0x0400 != 0, "a local answer is not authoritative")
        }
    }
    return 0
}

/// What the list parser leaves out of hosts files, mirrored here so the fuzzer skips the same names.
enum DomainListFuzzing {
    static let hostsNames: Set<String> = [
        "localhost", "localhost.localdomain", "local", "broadcasthost", "ip6-localhost", "ip6-loopback",
        "ip6-localnet", "ip6-mcastprefix", "ip6-allnodes", "ip6-allrouters", "ip6-allhosts", "0.0.0.0",
    ]

    /// The line without surrounding spaces, tabs and CRs, when what is left is one dotted name of
    /// ASCII letters, digits and hyphens that does not start with a dot; worked on octets, as the
    /// harness runs it millions of times.
    static func plainName(_ line: Slice<UnsafeRawBufferPointer>) -> String? {
        let isBlank = { (octet: UInt8) in octet == 0x20 || octet == 0x09 || octet == 0x0D }
        guard let first = line.firstIndex(where: { !isBlank($0) }),
            let last = line.lastIndex(where: { !isBlank($0) })
        else { return nil }
        let token = line[first...last]
        var hasDot = false
        for octet in token {
            switch octet {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"):
                continue
            case UInt8(ascii: "."): hasDot = true
            default: return nil
            }
        }
        guard hasDot, token.first != UInt8(ascii: ".") else { return nil }
        return String(decoding: token, as: UTF8.self)
    }
}
