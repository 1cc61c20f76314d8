/// Why a query to an upstream resolver failed.
///
/// It names the upstream and says what went wrong in a ``code`` that callers can switch on, plus a
/// ``detail`` for people. The underlying TLS error is kept when there is one.
public struct UpstreamError: Error, Hashable, Sendable, CustomStringConvertible {
    /// What kind of failure this was.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let description: String
        private init(_ description: String) { self.description = description }

        /// The code as a metric label value: lower case, words joined by `_`.
        var metricLabel: String { description.lowercased().split(separator: " ").joined(separator: "_") }

        /// No reply before the query's deadline (including a connection that never answered).
        public static let timeout = Code("timeout")
        /// The upstream refused the TCP connection.
        public static let connectionRefused = Code("connection refused")
        /// The TCP connection could not be made for another reason.
        public static let connectionFailed = Code("connection failed")
        /// The TLS handshake failed (protocol error, garbage instead of TLS, closed mid-handshake).
        public static let tlsHandshakeFailed = Code("TLS handshake failed")
        /// The certificate was rejected: untrusted, expired, or not for the authentication name.
        public static let certificateRejected = Code("certificate rejected")
        /// The certificate chain matched none of the configured SPKI pins.
        public static let pinMismatch = Code("pin mismatch")
        /// The connection was reset or closed with the query in flight, and the retry failed too.
        public static let connectionReset = Code("connection reset")
        /// The reply could not be parsed.
        public static let malformedReply = Code("malformed reply")
        /// Too many queries are in flight to this upstream; the query was not sent.
        public static let overloaded = Code("overloaded")
        /// The proxy could not open a socket (out of file descriptors or kernel buffers); this says
        /// nothing about the upstream, and does not count against its health.
        public static let localResourcesExhausted = Code("local resources exhausted")
        /// Every upstream of a pool is down, so the query was not sent.
        public static let noUpstreamAvailable = Code("no upstream available")
        /// The transport is shutting down.
        public static let shutdown = Code("shutdown")
        /// The query itself could not be parsed, so it was not sent.
        public static let malformedQuery = Code("malformed query")
    }

    /// What kind of failure this was.
    public var code: Code
    /// The upstream, as `address:port#name`.
    public var upstream: String
    /// A human-readable explanation.
    public var detail: String
    /// The TLS error behind the failure, if any.
    public var tlsError: GnuTLSError?

    /// Creates an error.
    ///
    /// - Parameters:
    ///   - code: What kind of failure.
    ///   - upstream: The upstream's description.
    ///   - detail: An explanation.
    ///   - tlsError: The TLS error behind it.
    public init(_ code: Code, upstream: String, detail: String = "", tlsError: GnuTLSError? = nil) {
        self.code = code
        self.upstream = upstream
        self.detail = detail
        self.tlsError = tlsError
    }

    /// `error` itself when it is an `UpstreamError`; otherwise a connection failure of `upstream`
    /// that describes it.
    static func wrapping(_ error: any Error, upstream: String) -> UpstreamError {
        error as? UpstreamError ?? UpstreamError(.connectionFailed, upstream: upstream, detail: "\(error)")
    }

    public var description: String {
        "upstream \(upstream): \(code)" + (detail.isEmpty ? "" : ": \(detail)")
    }

    /// What a client's SERVFAIL says of this failure (RFC 8914): No Reachable Authority when nothing
    /// answered, Network Error otherwise, with the kind in the text (and for a certificate, GnuTLS's
    /// reason). The upstream's address is left out.
    public var extendedDNSError: ExtendedDNSError {
        switch code {
        case .noUpstreamAvailable:
            ExtendedDNSError(code: .noReachableAuthority, text: "every upstream resolver is down")
        case .timeout:
            ExtendedDNSError(code: .noReachableAuthority, text: "the upstream resolver did not answer in time")
        case .certificateRejected:
            ExtendedDNSError(code: .networkError, text: "upstream certificate rejected: \(detail)")
        default: ExtendedDNSError(code: .networkError, text: "upstream \(code)")
        }
    }
}
