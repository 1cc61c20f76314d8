import ArgumentParser
import DoTCore
import Logging

// The options that take one of a fixed set of values. Each is a type the parser knows, so `--help`
// lists the choices and a wrong value is refused before anything starts (exit 64). Values are read
// without regard to case.

/// `--upstream-policy`: how queries are spread over the upstreams.
enum UpstreamPolicyArgument: String, CaseIterable, ExpressibleByArgument, Sendable {
    case leastOutstanding = "least-outstanding"
    case roundRobin = "round-robin"
    case sequential
    case random
    case fastest

    init?(argument: String) { self.init(rawValue: argument.lowercased()) }

    var policy: any UpstreamSelectionPolicy {
        switch self {
        case .leastOutstanding: .leastOutstanding
        case .roundRobin: .roundRobin
        case .sequential: .sequential
        case .random: .random
        case .fastest: .fastest
        }
    }
}

/// `--rate-limit-action`: what happens to a query over its client's limit.
enum RateLimitActionArgument: String, CaseIterable, ExpressibleByArgument, Sendable {
    case refuse
    case drop
    case slip

    init?(argument: String) { self.init(rawValue: argument.lowercased()) }

    var decision: RateLimitDecision {
        switch self {
        case .refuse: .refuse
        case .drop: .drop
        case .slip: .slip
        }
    }
}

/// `--tls-min-version`: the oldest TLS version an upstream may speak.
enum TLSVersionArgument: String, CaseIterable, ExpressibleByArgument, Sendable {
    case tls12 = "1.2"
    case tls13 = "1.3"

    init?(argument: String) {
        guard let version = TLSClientConfiguration.ProtocolVersion(argument) else { return nil }
        self = version == .tls13 ? .tls13 : .tls12
    }

    var version: TLSClientConfiguration.ProtocolVersion { self == .tls13 ? .tls13 : .tls12 }
}

/// `--log-level`.
enum LogLevelArgument: String, CaseIterable, ExpressibleByArgument, Sendable {
    case trace, debug, info, notice, warning, error, critical

    init?(argument: String) { self.init(rawValue: argument.lowercased()) }

    var level: Logger.Level { Logger.Level(rawValue: rawValue)! }
}

/// `--log-format`: `text` for people, `json` for one object per line.
enum LogFormatArgument: String, CaseIterable, ExpressibleByArgument, Sendable {
    case text
    case json

    init?(argument: String) { self.init(rawValue: argument.lowercased()) }
}

/// `--failover-rcode`: a reply code that sends a query on to the next upstream, by name or number,
/// or `none`.
struct FailoverResponseCodeArgument: ExpressibleByArgument, Hashable, Sendable {
    /// The code, or `nil` for `none`.
    let code: DNSResponseCode?

    static let names: [(String, DNSResponseCode)] = [
        ("SERVFAIL", .serverFailure), ("REFUSED", .refused), ("NOTIMP", .notImplemented), ("FORMERR", .formatError),
        ("NXDOMAIN", .nameError),
    ]

    init?(argument: String) {
        if argument.lowercased() == "none" {
            code = nil
        } else if let named = Self.names.first(where: { $0.0 == argument.uppercased() }) {
            code = named.1
        } else if let number = UInt16(argument), number != 0, let numbered = DNSResponseCode(rawValue: number) {
            code = numbered
        } else {
            return nil
        }
    }

    static var allValueStrings: [String] { names.map(\.0) + ["none"] }
    static var defaultCompletionKind: CompletionKind { .list(allValueStrings) }
}

/// `--block-action`: what a blocked query gets: `nxdomain`, `refused`, `null` (0.0.0.0 and ::), or
/// addresses, comma-separated (`192.0.2.1,2001:db8::1`).
struct BlockActionArgument: ExpressibleByArgument, Hashable, Sendable {
    let action: BlockAction

    init?(argument: String) {
        switch argument.lowercased() {
        case "nxdomain": action = .nxdomain
        case "refused": action = .refused
        case "null": action = .nullAddress
        default:
            var v4: [IPv4Address] = []
            var v6: [IPv6Address] = []
            for part in argument.split(separator: ",") {
                if let address = IPv4Address(String(part)) {
                    v4.append(address)
                } else if let address = IPv6Address(String(part)) {
                    v6.append(address)
                } else {
                    return nil
                }
            }
            guard !v4.isEmpty || !v6.isEmpty else { return nil }
            action = .addresses(v4, v6)
        }
    }

    var defaultValueDescription: String { action.description }

    static var allValueStrings: [String] { ["nxdomain", "refused", "null", "ADDRESS[,ADDRESS…]"] }
}
