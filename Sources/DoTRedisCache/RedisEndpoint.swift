/// Where Redis is and how to log in, from a URL: `redis://[[user]:password@]host[:port][/db]`, or
/// `rediss://…` for TLS (GnuTLS, verified like the upstreams: the host name against the certificate).
///
/// The password never appears in ``description``, so an endpoint may be logged.
public struct RedisEndpoint: Hashable, Sendable, CustomStringConvertible {
    /// The host name or address (IPv6 in brackets in the URL, without them here).
    public var host: String
    /// The port; 6379 by default.
    public var port: Int
    /// The database index `SELECT`ed after connecting; 0 by default.
    public var database: Int
    /// The ACL user (Redis 6), or `nil` for the default user.
    public var username: String?
    /// The password sent with `AUTH`, or `nil` for none.
    public var password: String?
    /// Whether the connection is TLS (`rediss://`).
    public var usesTLS: Bool

    /// Parses a URL.
    ///
    /// - Throws: ``RedisError`` with ``RedisError/Code/invalidURL`` and the reason (without the
    ///   password).
    public init(url: String) throws(RedisError) {
        func invalid(_ reason: String) -> RedisError {
            RedisError(.invalidURL, "\(reason); expected redis://[[user]:password@]host[:port][/db] or rediss://…")
        }
        var rest: Substring
        if url.hasPrefix("redis://") {
            usesTLS = false
            rest = url.dropFirst("redis://".count)
        } else if url.hasPrefix("rediss://") {
            usesTLS = true
            rest = url.dropFirst("rediss://".count)
        } else {
            throw invalid("not a redis:// or rediss:// URL")
        }
        username = nil
        password = nil
        if let at = rest.lastIndex(of: "@") {
            let credentials = rest[..<at]
            rest = rest[rest.index(after: at)...]
            if let colon = credentials.firstIndex(of: ":") {
                let user = Self.percentDecoded(credentials[..<colon])
                username = user.isEmpty ? nil : user
                password = Self.percentDecoded(credentials[credentials.index(after: colon)...])
            } else {
                password = Self.percentDecoded(credentials)
            }
        }
        database = 0
        if let slash = rest.firstIndex(of: "/") {
            let path = rest[rest.index(after: slash)...]
            rest = rest[..<slash]
            if !path.isEmpty {
                guard let number = Int(path), (0...65_535).contains(number) else {
                    throw invalid("database \"\(path)\" is not a number")
                }
                database = number
            }
        }
        port = 6379
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else { throw invalid("unclosed [ in the host") }
            host = String(rest[rest.index(after: rest.startIndex)..<close])
            rest = rest[rest.index(after: close)...]
            if !rest.isEmpty {
                guard rest.hasPrefix(":") else { throw invalid("text after the host") }
            }
        } else if let colon = rest.lastIndex(of: ":") {
            host = String(rest[..<colon])
            rest = rest[colon...]
        } else {
            host = String(rest)
            rest = ""
        }
        if rest.hasPrefix(":") {
            guard let number = Int(rest.dropFirst()), (1...65_535).contains(number) else {
                throw invalid("port \"\(rest.dropFirst())\" is not 1-65535")
            }
            port = number
        }
        guard !host.isEmpty else { throw invalid("no host") }
    }

    /// The URL with the password replaced by `***`.
    public var description: String {
        let scheme = usesTLS ? "rediss" : "redis"
        let credentials =
            switch (username, password) {
            case (nil, nil): ""
            case (let user?, nil): "\(user)@"
            case (let user, _?): "\(user ?? ""):***@"
            }
        let hostText = host.contains(":") ? "[\(host)]" : host
        return "\(scheme)://\(credentials)\(hostText):\(port)/\(database)"
    }

    private static func percentDecoded(_ text: Substring) -> String {
        var bytes: [UInt8] = []
        var iterator = Array(text.utf8).makeIterator()
        while let byte = iterator.next() {
            guard byte == UInt8(ascii: "%") else {
                bytes.append(byte)
                continue
            }
            let high = iterator.next().flatMap { hexValue($0) }
            let low = iterator.next().flatMap { hexValue($0) }
            guard let high, let low else { return String(text) }
            bytes.append(high << 4 | low)
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
