internal import CGnuTLS
import Logging

/// The expensive, shareable half of TLS: loaded trust roots and a compiled priority cache.
///
/// Build one per ``TLSClientConfiguration`` at start-up and share it between every connection to every
/// upstream that uses that configuration; GnuTLS credentials and priority caches are safe to use from
/// many sessions at once and are never changed after construction.
///
/// > Warning: Creating a context reads the trust store or CA file from disk and parses every
/// > certificate in it. It blocks; never create one on an event loop.
public final class TLSClientContext: Sendable {
    /// The configuration the context was built from.
    public let configuration: TLSClientConfiguration
    /// How many trusted certificates were loaded.
    public let trustedCertificateCount: Int

    // Pointers to GnuTLS objects that are immutable after init and freed in deinit.
    nonisolated(unsafe) let credentials: gnutls_certificate_credentials_t
    nonisolated(unsafe) let priority: gnutls_priority_t

    /// Loads the trust roots and compiles the priority string.
    ///
    /// - Parameters:
    ///   - configuration: What TLS should do.
    ///   - logger: Where to warn about opportunistic mode.
    /// - Throws: ``GnuTLSError`` when GnuTLS is too old, the trust roots cannot be loaded (or are empty),
    ///   or the priority string is invalid.
    public init(
        configuration: TLSClientConfiguration,
        logger: Logger = Logger(label: "dotproxy.tls")
    ) throws(GnuTLSError) {
        try GnuTLSLibrary.checkVersion()
        var credentials: gnutls_certificate_credentials_t?
        var status = gnutls_certificate_allocate_credentials(&credentials)
        guard status == GNUTLS_E_SUCCESS, let credentials else {
            throw GnuTLSError(code: status, operation: "allocate credentials")
        }
        switch configuration.trustRoots.source {
        case .system:
            status = gnutls_certificate_set_x509_system_trust(credentials)
        case .pemFile(let path):
            status = gnutls_certificate_set_x509_trust_file(credentials, path, GNUTLS_X509_FMT_PEM)
        }
        guard status > 0 else {
            gnutls_certificate_free_credentials(credentials)
            if status == 0 {
                throw GnuTLSError(
                    message: "no certificates found in \(configuration.trustRoots)",
                    operation: "load trust roots"
                )
            }
            var error = GnuTLSError(code: status, operation: "load trust roots")
            error.message += " (\(configuration.trustRoots))"
            throw error
        }
        self.trustedCertificateCount = Int(status)

        var priority: gnutls_priority_t?
        var errorPosition: UnsafePointer<CChar>?
        let priorityText = configuration.effectivePriorityString
        status = gnutls_priority_init(&priority, priorityText, &errorPosition)
        guard status == GNUTLS_E_SUCCESS, let priority else {
            gnutls_certificate_free_credentials(credentials)
            var error = GnuTLSError(code: status, operation: "parse priority string")
            if let errorPosition { error.message += " at \"\(String(cString: errorPosition))\"" }
            throw error
        }
        self.credentials = credentials
        self.priority = priority
        self.configuration = configuration
        if !configuration.verification.authenticates {
            logger.warning(
                "opportunistic TLS: upstream certificates are not verified, so an active attacker can read and change DNS traffic"
            )
        }
    }

    deinit {
        gnutls_priority_deinit(priority)
        gnutls_certificate_free_credentials(credentials)
    }
}
