internal import CGnuTLS

/// Server credentials for the in-process DoT server that the tests and benchmarks use.
///
/// Package access only: dotproxy is a TLS client, and this exists so that `DoTCoreTesting` can script
/// a real GnuTLS server without exposing GnuTLS types.
///
/// > Warning: Reads the certificate and key from disk; it blocks.
package final class TLSServerContext: Sendable {
    nonisolated(unsafe) let credentials: gnutls_certificate_credentials_t
    nonisolated(unsafe) let priority: gnutls_priority_t
    /// Whether the server issues TLS 1.3 session tickets, so clients can resume.
    package let issuesSessionTickets: Bool
    nonisolated(unsafe) let ticketKey: UnsafeMutablePointer<gnutls_datum_t>?

    /// Loads a PEM certificate chain and its private key.
    ///
    /// - Parameters:
    ///   - certificateFile: The server certificate, followed by any intermediates, in PEM.
    ///   - keyFile: The private key in PEM.
    ///   - priorityString: The GnuTLS priority string; `NORMAL` by default.
    ///   - issuesSessionTickets: Whether to issue session tickets.
    package init(
        certificateFile: String,
        keyFile: String,
        priorityString: String = "NORMAL",
        issuesSessionTickets: Bool = true
    )
        throws(GnuTLSError)
    {
        var credentials: gnutls_certificate_credentials_t?
        var status = gnutls_certificate_allocate_credentials(&credentials)
        guard status == GNUTLS_E_SUCCESS, let credentials else {
            throw GnuTLSError(code: status, operation: "allocate credentials")
        }
        status = gnutls_certificate_set_x509_key_file(credentials, certificateFile, keyFile, GNUTLS_X509_FMT_PEM)
        guard status == GNUTLS_E_SUCCESS else {
            gnutls_certificate_free_credentials(credentials)
            throw GnuTLSError(code: status, operation: "load \(certificateFile)")
        }
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
        self.credentials = credentials
        self.priority = priority
        self.issuesSessionTickets = issuesSessionTickets
        self.ticketKey = ticketKey
    }

    deinit {
        if let ticketKey {
            dotproxy_gnutls_free(ticketKey.pointee.data)
            ticketKey.deallocate()
        }
        gnutls_priority_deinit(priority)
        gnutls_certificate_free_credentials(credentials)
    }
}
