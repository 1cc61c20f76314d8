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
    let lines = bytes.split(separator: 0x0A, omittingEmptySubsequences: false).map {
        Substring(String(decoding: $0, as: UTF8.self))
    }
    precondition(list.rejectedLineCount <= lines.count)
    precondition(list.rejectedLines.count <= min(DomainList.keptRejectedLines, list.rejectedLineCount))
    for line in lines.prefix(64) {
        let token = line.trimmingCharacters(in: " \t\r")
        guard !token.isEmpty,
            token.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == ".") }),
            !token.hasPrefix("."), token.contains("."), !DomainListFuzzing.hostsNames.contains(token.lowercased())
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
    precondition(local.rejectedLineCount <= lines.count)
    for line in lines.prefix(16) {
        guard let first = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).first,
            let name = try? DNSName(parsing: String(first))
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
}

extension Substring {
    fileprivate func trimmingCharacters(in set: String) -> String {
        String(drop { set.contains($0) }.reversed().drop { set.contains($0) }.reversed())
    }
}
