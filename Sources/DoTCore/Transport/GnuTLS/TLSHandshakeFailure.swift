/// Why a TLS connection could not be established, as the handler reports it to the pipeline.
///
/// The transport turns this into an ``UpstreamError`` that names the upstream.
package struct TLSHandshakeFailure: Error {
    /// The GnuTLS error, if GnuTLS reported one.
    package var error: GnuTLSError?
    /// The certificate verification status bits, when verification failed.
    package var certificateStatus: UInt32?
    /// GnuTLS's description of the status.
    package var certificateStatusDescription: String?
    /// The certificate chain verified, but no certificate matched a configured pin.
    package var pinMismatch: Bool = false
    /// The connection closed before the handshake finished.
    package var closedEarly: Bool = false
}

/// Sent down the pipeline as a user event when the handshake has completed and been verified.
package struct TLSHandshakeCompleted: Sendable {
    package var protocolName: String
    package var cipherName: String
    package var resumed: Bool
    /// The ALPN protocol agreed on, if any.
    package var applicationProtocol: String?
}

/// Sent as a user event when a session ticket arrived, carrying data to resume the session later.
package struct TLSSessionTicketReceived: Sendable {
    package var resumptionData: [UInt8]
}
