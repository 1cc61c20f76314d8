internal import CGnuTLS

/// Why a client's TLS handshake failed, as the `reason` label of
/// `dotproxy_client_tls_handshake_failures_total` and the log say it.
enum TLSHandshakeFailureReason: String, CaseIterable, Sendable {
    /// Not done within the handshake deadline: a client that connected and sent nothing, or stopped.
    case timeout
    /// The client closed the connection before the handshake finished.
    case closed
    /// The first bytes were not a TLS record: plain DNS sent to the TLS port, or other garbage.
    case notTLS = "not_tls"
    /// A TLS peer with nothing in common (version, cipher, group) or a malformed handshake message.
    case `protocol`
    /// Anything else.
    case other

    /// The reason for an error the TLS handler reported during the handshake.
    init(_ error: any Error) {
        if let failure = error as? TLSHandshakeFailure {
            if failure.closedEarly {
                self = .closed
                return
            }
            if let code = failure.error?.code {
                self.init(code: Int32(code))
                return
            }
            self = .other
        } else if let error = error as? GnuTLSError {
            self.init(code: Int32(error.code))
        } else {
            self = .other
        }
    }

    private init(code: Int32) {
        switch code {
        case GNUTLS_E_UNEXPECTED_PACKET_LENGTH, GNUTLS_E_UNSUPPORTED_VERSION_PACKET, GNUTLS_E_UNEXPECTED_PACKET,
            GNUTLS_E_RECORD_OVERFLOW:
            self = .notTLS
        case GNUTLS_E_PREMATURE_TERMINATION, GNUTLS_E_PULL_ERROR, GNUTLS_E_PUSH_ERROR:
            self = .closed
        case 0:
            self = .other
        default:
            self = .protocol
        }
    }
}
