import ArgumentParser
import DoTCore

/// An `--upstream` value: `IP`, `IP:PORT`, `[IPv6]:PORT` or a bare IPv6 address, each with an optional
/// `#authentication-name` (Unbound's notation); or `tls://HOSTNAME[:PORT][#name]`, resolved at start-up
/// and again when its TTL expires. Well-known public resolvers get their names automatically.
struct UpstreamArgument: ExpressibleByArgument, Hashable, Sendable, CustomStringConvertible {
    /// An address, or a host name to resolve.
    enum Target: Hashable, Sendable {
        case address(UpstreamAddress)
        case hostname(host: String, port: Int, authenticationName: String?)
    }

    let target: Target

    /// The address, when the upstream was given as one.
    var address: UpstreamAddress? {
        if case .address(let address) = target { return address }
        return nil
    }

    var description: String {
        switch target {
        case .address(let address): return address.description
        case .hostname(let host, let port, let name): return "tls://\(host):\(port)" + (name.map { "#\($0)" } ?? "")
        }
    }

    /// Authentication names of well-known public DoT resolvers (RFC 8310 §8), by address.
    static let wellKnownNames: [String: String] = [
        "1.1.1.1": "cloudflare-dns.com", "1.0.0.1": "cloudflare-dns.com",
        "2606:4700:4700::1111": "cloudflare-dns.com", "2606:4700:4700::1001": "cloudflare-dns.com",
        "8.8.8.8": "dns.google", "8.8.4.4": "dns.google",
        "2001:4860:4860::8888": "dns.google", "2001:4860:4860::8844": "dns.google",
        "9.9.9.9": "dns.quad9.net", "149.112.112.112": "dns.quad9.net",
        "2620:fe::fe": "dns.quad9.net", "2620:fe::9": "dns.quad9.net",
    ]

    init?(argument: String) {
        if let address = Self.parse(argument.hasPrefix("tls://") ? String(argument.dropFirst(6)) : argument) {
            target = .address(address)
        } else if argument.hasPrefix("tls://"), let hostname = Self.parseHostname(String(argument.dropFirst(6))) {
            target = hostname
        } else {
            return nil
        }
    }

    /// Splits `TARGET#name` into the target and the authentication name; `nil` when the name is empty
    /// or not a domain name.
    static func splitName(_ text: String) -> (Substring, String?)? {
        guard let hash = text.firstIndex(of: "#") else { return (Substring(text), nil) }
        let name = String(text[text.index(after: hash)...])
        guard !name.isEmpty, (try? DNSName(parsing: name)) != nil else { return nil }
        return (text[..<hash], name)
    }

    /// `HOSTNAME[:PORT][#name]`.
    static func parseHostname(_ text: String) -> Target? {
        guard let (target, name) = splitName(text) else { return nil }
        var rest = target
        var port = 853
        if let colon = rest.firstIndex(of: ":") {
            guard let value = Int(rest[rest.index(after: colon)...]), (1...65535).contains(value) else { return nil }
            port = value
            rest = rest[..<colon]
        }
        let host = String(rest)
        // A name with at least one dot, letters, digits and hyphens only: never an address literal.
        guard host.contains("."), !host.hasSuffix("."),
            host.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "." }),
            host.contains(where: \.isLetter), (try? DNSName(parsing: host)) != nil
        else { return nil }
        return .hostname(host: host.lowercased(), port: port, authenticationName: name)
    }

    /// An address upstream (``UpstreamAddress/init(_:)``), with the authentication name of a
    /// well-known resolver filled in when none is given.
    static func parse(_ text: String) -> UpstreamAddress? {
        guard var address = UpstreamAddress(text) else { return nil }
        if address.authenticationName == nil { address.authenticationName = wellKnownNames[address.host] }
        return address
    }

    static var defaultCompletionKind: CompletionKind { .default }
}

/// A `--listen` value: `IP:PORT` or `[IPv6]:PORT`.
struct ListenArgument: ExpressibleByArgument, Hashable, Sendable {
    let host: String
    let port: Int

    init?(argument: String) {
        // Same notation as an upstream, but with no name and with an explicit port.
        // IPv6 needs brackets here, or "2001:db8::853" would read as port 853.
        guard !argument.contains("#"), let parsed = UpstreamArgument.parse(argument),
            argument.hasSuffix(":\(parsed.port)"),
            !parsed.host.contains(":") || argument.hasPrefix("[")
        else { return nil }
        self.host = parsed.host
        self.port = parsed.port
    }

    var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}
