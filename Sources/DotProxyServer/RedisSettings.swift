import DoTRedisCache

/// The shared second cache tier, from `--redis`, `--redis-timeout` and `--redis-key-prefix`.
struct RedisSettings: Hashable, Sendable, CustomStringConvertible {
    var client: RedisClient.Configuration
    var keyPrefix: String

    /// For the log: the URL without its password.
    var description: String { "\(client.endpoint) timeout=\(client.timeout) prefix=\(keyPrefix)" }
}
