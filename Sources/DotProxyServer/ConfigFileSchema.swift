import ArgumentParser

/// The keys a configuration file may hold, each tied to the command-line option it sets, so that the
/// file, the environment and the flags are three spellings of one set of settings.
///
/// A file key is its section and name joined by a dot (`cache.size` is `cache:` then `size:`); the
/// option is what the value becomes when neither the command line nor a `DOTPROXY_*` variable sets it.
/// The upstreams are the one structured section: see ``ConfigFile/Upstream``.
enum ConfigFileSchema {
    /// What a key's value must be.
    enum Kind: Sendable {
        /// One value, any scalar, passed on as text (addresses and names are checked by the option).
        case text
        /// One of the values the option's type accepts.
        case choice(any ExpressibleByArgument.Type)
        /// A whole number.
        case integer
        /// A number, whole or not.
        case number
        /// `true` or `false`: an on/off flag.
        case flag
        /// A list of values (a single value counts as a list of one).
        case list
    }

    /// One key.
    struct Setting: Sendable {
        let key: String
        let option: String
        let kind: Kind
    }

    /// Every key but the upstreams, in the order Docs/configuration.md lists them.
    static let settings: [Setting] = [
        Setting(key: "listen", option: "listen", kind: .list),
        Setting(key: "listen-tls", option: "listen-tls", kind: .list),
        Setting(key: "tls-listener.cert", option: "tls-cert", kind: .text),
        Setting(key: "tls-listener.key", option: "tls-key", kind: .text),
        Setting(key: "limits.tcp-connections", option: "max-tcp-connections", kind: .integer),
        Setting(key: "limits.tls-connections", option: "max-tls-connections", kind: .integer),
        Setting(key: "limits.connections-per-client", option: "max-connections-per-client", kind: .integer),
        Setting(key: "limits.new-connections-per-second", option: "max-new-connections-per-second", kind: .number),
        Setting(key: "threads", option: "threads", kind: .integer),
        Setting(key: "upstream-policy", option: "upstream-policy", kind: .choice(UpstreamPolicyArgument.self)),
        Setting(key: "bootstrap", option: "bootstrap", kind: .list),
        Setting(key: "timeout", option: "timeout", kind: .number),
        Setting(key: "idle-timeout", option: "idle-timeout", kind: .number),
        Setting(key: "max-udp-size", option: "max-udp-size", kind: .integer),
        Setting(key: "failover.max-fails", option: "max-fails", kind: .integer),
        Setting(key: "failover.rcodes", option: "failover-rcode", kind: .list),
        Setting(key: "health-check.interval", option: "health-check-interval", kind: .number),
        Setting(key: "health-check.name", option: "health-check-name", kind: .text),
        Setting(key: "health-check.type", option: "health-check-type", kind: .text),
        Setting(key: "tls.ca-file", option: "ca-file", kind: .text),
        Setting(key: "tls.pin-sha256", option: "pin-sha256", kind: .list),
        Setting(key: "tls.min-version", option: "tls-min-version", kind: .choice(TLSVersionArgument.self)),
        Setting(key: "tls.opportunistic", option: "opportunistic-tls", kind: .flag),
        Setting(key: "cache.size", option: "cache-size", kind: .integer),
        Setting(key: "cache.max-bytes", option: "cache-max-bytes", kind: .integer),
        Setting(key: "cache.min-ttl", option: "cache-min-ttl", kind: .integer),
        Setting(key: "cache.max-ttl", option: "cache-max-ttl", kind: .integer),
        Setting(key: "cache.max-negative-ttl", option: "cache-max-negative-ttl", kind: .integer),
        Setting(key: "cache.serve-stale", option: "serve-stale", kind: .flag),
        Setting(key: "cache.prefetch", option: "prefetch", kind: .flag),
        Setting(key: "redis.url", option: "redis", kind: .text),
        Setting(key: "redis.timeout", option: "redis-timeout", kind: .number),
        Setting(key: "redis.key-prefix", option: "redis-key-prefix", kind: .text),
        Setting(key: "rate-limit.qps", option: "rate-limit", kind: .number),
        Setting(key: "rate-limit.burst", option: "rate-limit-burst", kind: .number),
        Setting(key: "rate-limit.ipv4-prefix", option: "rate-limit-ipv4-prefix", kind: .integer),
        Setting(key: "rate-limit.ipv6-prefix", option: "rate-limit-ipv6-prefix", kind: .integer),
        Setting(key: "rate-limit.action", option: "rate-limit-action", kind: .choice(RateLimitActionArgument.self)),
        Setting(key: "rate-limit.slip", option: "rate-limit-slip", kind: .integer),
        Setting(key: "filter.blocklists", option: "blocklist", kind: .list),
        Setting(key: "filter.allowlists", option: "allowlist", kind: .list),
        Setting(key: "filter.local-records", option: "local-records", kind: .text),
        Setting(key: "filter.action", option: "block-action", kind: .text),
        Setting(key: "filter.ttl", option: "block-ttl", kind: .integer),
        Setting(key: "access.allow", option: "allow", kind: .list),
        Setting(key: "access.allow-any", option: "allow-any", kind: .flag),
        Setting(key: "log.level", option: "log-level", kind: .choice(LogLevelArgument.self)),
        Setting(key: "log.format", option: "log-format", kind: .choice(LogFormatArgument.self)),
        Setting(key: "log.queries", option: "log-queries", kind: .flag),
        Setting(key: "metrics.listen", option: "metrics-listen", kind: .text),
    ]

    /// The upstreams section: a mapping from a name of the operator's choosing (used in logs and
    /// metrics) to the upstream's settings.
    static let upstreamsKey = "upstreams"

    /// The keys one upstream may hold, and the options that are not in the file (the file's own).
    static let upstreamKeys = ["address", "auth-name", "pin-sha256", "ca-file", "tls-min-version", "timeout"]

    /// Options with no file key: `--upstream` is the upstreams section; `--config` and
    /// `--watch-config` name and watch the file itself.
    static let optionsWithoutKey: Set<String> = ["upstream", "config", "watch-config"]

    /// The settings by key.
    static let byKey: [String: Setting] = Dictionary(uniqueKeysWithValues: settings.map { ($0.key, $0) })

    /// The sections (the part before the dot) and the top-level keys.
    static let sections: Set<String> = Set(settings.compactMap { $0.key.split(separator: ".").first.map(String.init) })
}
