/// What TLS does on a connection to an upstream resolver: trust, versions, verification and pins.
///
/// This is a plain value; build a ``TLSClientContext`` from it once and share the context between
/// connections. The secure default comes from ``makeStrict()``: full certificate verification against
/// the system trust store, TLS 1.2 or newer (1.3 preferred). Opportunistic TLS, which encrypts without
/// authenticating the server (RFC 8310 §5), exists only through ``makeOpportunistic()``.
public struct TLSClientConfiguration: Hashable, Sendable {
    /// Where trusted certificate authorities come from.
    public struct TrustRoots: Hashable, Sendable, CustomStringConvertible {
        enum Source: Hashable, Sendable {
            case system
            case pemFile(String)
        }

        let source: Source

        /// The operating system's trust store (on Debian, from the `ca-certificates` package).
        public static let system = TrustRoots(source: .system)

        /// The certificates in a PEM file, such as a private CA.
        public static func pemFile(_ path: String) -> TrustRoots { TrustRoots(source: .pemFile(path)) }

        public var description: String {
            switch source {
            case .system: "system trust store"
            case .pemFile(let path): "CA file \(path)"
            }
        }
    }

    /// A TLS protocol version.
    public struct ProtocolVersion: Hashable, Sendable, Comparable, CustomStringConvertible {
        let rank: Int
        public let description: String

        /// TLS 1.2 (RFC 5246).
        public static let tls12 = ProtocolVersion(rank: 12, description: "TLS1.2")
        /// TLS 1.3 (RFC 8446).
        public static let tls13 = ProtocolVersion(rank: 13, description: "TLS1.3")

        /// Parses `1.2`, `1.3`, `tls1.2` or `TLS1.3`.
        public init?(_ text: String) {
            switch text.lowercased() {
            case "1.2", "tls1.2", "tlsv1.2": self = .tls12
            case "1.3", "tls1.3", "tlsv1.3": self = .tls13
            default: return nil
            }
        }

        private init(rank: Int, description: String) {
            self.rank = rank
            self.description = description
        }

        public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rank < rhs.rank }
    }

    /// How the server's identity is checked.
    public struct Verification: Hashable, Sendable, CustomStringConvertible {
        let authenticates: Bool
        public let description: String

        /// The certificate chain must be trusted, valid now, and name the upstream's authentication name
        /// (or its IP address when it has no name). Any failure fails the connection.
        public static let strict = Verification(authenticates: true, description: "strict")
        /// Encrypt, but accept any certificate. Protects only against passive eavesdropping.
        public static let opportunistic = Verification(authenticates: false, description: "opportunistic")
    }

    /// The certificate authorities to trust.
    public var trustRoots: TrustRoots
    /// The oldest TLS version to accept; TLS 1.3 is always preferred.
    public var minimumVersion: ProtocolVersion
    /// A GnuTLS priority string that replaces the one derived from ``minimumVersion``, for experts.
    public var priorityString: String?
    /// How the server's identity is checked.
    public var verification: Verification
    /// SHA-256 digests of acceptable SubjectPublicKeyInfo structures (RFC 7858 §4.2). When not empty, a
    /// certificate in the server's chain must match one of them, in addition to ``verification``.
    public var spkiPins: Set<SPKIPin>

    /// Creates a configuration; prefer ``makeStrict()`` and change what you need.
    ///
    /// - Parameters:
    ///   - trustRoots: The certificate authorities to trust.
    ///   - minimumVersion: The oldest TLS version to accept.
    ///   - priorityString: A GnuTLS priority string to use instead of the derived one.
    ///   - verification: How the server's identity is checked.
    ///   - spkiPins: SPKI SHA-256 pins, or none.
    public init(
        trustRoots: TrustRoots,
        minimumVersion: ProtocolVersion,
        priorityString: String? = nil,
        verification: Verification,
        spkiPins: Set<SPKIPin> = []
    ) {
        self.trustRoots = trustRoots
        self.minimumVersion = minimumVersion
        self.priorityString = priorityString
        self.verification = verification
        self.spkiPins = spkiPins
    }

    /// The secure default: system trust store, TLS 1.2 or newer, strict verification.
    public static func makeStrict() -> TLSClientConfiguration {
        TLSClientConfiguration(trustRoots: .system, minimumVersion: .tls12, verification: .strict)
    }

    /// Encryption without authentication. Only for upstreams that cannot be authenticated; a
    /// ``TLSClientContext`` built from it logs a warning.
    public static func makeOpportunistic() -> TLSClientConfiguration {
        TLSClientConfiguration(trustRoots: .system, minimumVersion: .tls12, verification: .opportunistic)
    }

    /// The GnuTLS priority string in effect.
    public var effectivePriorityString: String {
        if let priorityString { return priorityString }
        switch minimumVersion {
        case .tls13: return "NORMAL:-VERS-ALL:+VERS-TLS1.3"
        default: return "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"
        }
    }
}
