internal import CGnuTLS

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#else
import Darwin
#endif

/// A server certificate and key, with the settings every DNS-over-TLS session of a listener shares:
/// TLS 1.3 and 1.2 only, ALPN "dot" offered, and session tickets for resumption.
///
/// Build one at start-up (and again when the pair is reloaded) and hand it to ``DNSProxyServer``;
/// every handshake that starts afterwards uses it, while open connections keep the one they started
/// with. Credentials and priorities are read-only after construction and shared by every session.
///
/// Session tickets are encrypted under keys that GnuTLS derives from a master key made here and
/// rotates every ``sessionTicketLifetimeSeconds`` (tickets older than that are refused, and the client
/// makes a full handshake); a new context, at every reload, makes a new master key.
///
/// > Warning: Reads the certificate and key from disk and parses them. It blocks; never create one
/// > on an event loop.
public final class TLSServerContext: Sendable {
    /// The PEM file of the certificate chain, leaf first.
    public let certificateChainFile: String
    /// The PEM file of the private key.
    public let privateKeyFile: String
    /// When the leaf certificate expires, in seconds since the Unix epoch.
    public let certificateExpiry: Int
    /// Whether the server issues session tickets, so clients can resume.
    public let issuesSessionTickets: Bool
    /// How long a session ticket is accepted, and how often its key rotates.
    public static let sessionTicketLifetimeSeconds: UInt32 = 6 * 3600
    /// The ALPN protocol name of DNS over TLS (RFC 7858; IANA ALPN registry).
    public static let alpnProtocol = "dot"

    nonisolated(unsafe) let credentials: gnutls_certificate_credentials_t
    nonisolated(unsafe) let priority: gnutls_priority_t
    nonisolated(unsafe) let ticketKey: UnsafeMutablePointer<gnutls_datum_t>?

    /// TLS 1.3 first, TLS 1.2 for older clients; nothing older.
    static let defaultPriority = "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"

    /// Loads a PEM certificate chain and its private key (RSA or ECDSA).
    ///
    /// - Parameters:
    ///   - certificateChainFile: The server certificate, followed by any intermediates, in PEM.
    ///   - privateKeyFile: The private key in PEM.
    /// - Throws: ``GnuTLSError`` naming the file when either cannot be read or parsed, or when the key
    ///   does not belong to the certificate.
    public convenience init(certificateChainFile: String, privateKeyFile: String) throws(GnuTLSError) {
        try self.init(
            certificateFile: certificateChainFile,
            keyFile: privateKeyFile,
            priorityString: Self.defaultPriority,
            issuesSessionTickets: true
        )
    }

    /// Loads a pair with a priority string of the caller's choosing (the test server's).
    package init(
        certificateFile: String,
        keyFile: String,
        priorityString: String = "NORMAL",
        issuesSessionTickets: Bool = true
    )
        throws(GnuTLSError)
    {
        try GnuTLSLibrary.checkVersion()
        var credentials: gnutls_certificate_credentials_t?
        var status = gnutls_certificate_allocate_credentials(&credentials)
        guard status == GNUTLS_E_SUCCESS, let credentials else {
            throw GnuTLSError(code: status, operation: "allocate credentials")
        }
        status = gnutls_certificate_set_x509_key_file(credentials, certificateFile, keyFile, GNUTLS_X509_FMT_PEM)
        guard status >= 0 else {
            gnutls_certificate_free_credentials(credentials)
            throw GnuTLSError(code: status, operation: "load \(certificateFile) and \(keyFile)")
        }
        let expiry = Self.leafExpiry(credentials)
        var priority: gnutls_priority_t?
        status = gnutls_priority_init(&priority, priorityString, nil)
        guard status == GNUTLS_E_SUCCESS, let priority else {
            gnutls_certificate_free_credentials(credentials)
            throw GnuTLSError(code: status, operation: "parse priority string")
        }
        var ticketKey: UnsafeMutablePointer<gnutls_datum_t>?
        if issuesSessionTickets {
            let key = UnsafeMutablePointer<gnutls_datum_t>.allocate(capacity: 1)
            key.initialize(to: gnutls_datum_t(data: nil, size: 0))
            status = gnutls_session_ticket_key_generate(key)
            guard status == GNUTLS_E_SUCCESS else {
                key.deallocate()
                gnutls_priority_deinit(priority)
                gnutls_certificate_free_credentials(credentials)
                throw GnuTLSError(code: status, operation: "generate session ticket key")
            }
            ticketKey = key
        }
        self.certificateChainFile = certificateFile
        self.privateKeyFile = keyFile
        self.certificateExpiry = expiry
        self.credentials = credentials
        self.priority = priority
        self.issuesSessionTickets = issuesSessionTickets
        self.ticketKey = ticketKey
    }

    /// The leaf certificate's notAfter, or 0 when GnuTLS cannot tell.
    private static func leafExpiry(_ credentials: gnutls_certificate_credentials_t) -> Int {
        var list: UnsafeMutablePointer<gnutls_x509_crt_t?>?
        var count: UInt32 = 0
        guard gnutls_certificate_get_x509_crt(credentials, 0, &list, &count) == GNUTLS_E_SUCCESS, let list else {
            return 0
        }
        defer {
            for index in 0..<Int(count) { gnutls_x509_crt_deinit(list[index]) }
            dotproxy_gnutls_free(list)
        }
        guard count > 0, let leaf = list[0] else { return 0 }
        return Int(gnutls_x509_crt_get_expiration_time(leaf))
    }

    deinit {
        if let ticketKey {
            if let data = ticketKey.pointee.data { memset(data, 0, Int(ticketKey.pointee.size)) }
            dotproxy_gnutls_free(ticketKey.pointee.data)
            ticketKey.deallocate()
        }
        gnutls_priority_deinit(priority)
        gnutls_certificate_free_credentials(credentials)
    }
}
