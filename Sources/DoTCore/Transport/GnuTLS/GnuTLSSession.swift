internal import CGnuTLS
import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#else
import Darwin
#endif

/// One GnuTLS session driven entirely through memory buffers: the event loop owns the socket, and
/// GnuTLS only ever sees ``feedCiphertext(_:)`` and ``takeCiphertext()``.
///
/// The session runs with `GNUTLS_NONBLOCK`. Every engine call returns ``Outcome``: `.complete`,
/// `.incomplete` (GnuTLS needs more bytes from the peer; "try again" is never an error) or `.failed`.
///
/// Not thread-safe: it belongs to one channel handler on one event loop.
final class GnuTLSSession {
    enum Outcome {
        case complete
        case incomplete
        case failed(GnuTLSError)
    }

    /// Why ``read(into:)`` stopped. Any plaintext it decrypted before stopping is in the buffer.
    enum ReadOutcome {
        /// Nothing more can be read until more ciphertext arrives.
        case incomplete
        /// The peer closed the TLS session with close_notify.
        case closed
        case failed(GnuTLSError)
    }

    private let session: gnutls_session_t
    /// Ciphertext received from the peer that GnuTLS has not pulled yet.
    private var inbound: ByteBuffer
    /// Ciphertext GnuTLS has pushed, waiting to be written to the channel; allocated by the first push
    /// after each take. (`ByteBuffer()` would share NIO's one empty storage, whose reference count every
    /// event loop thread then writes to.)
    private var outbound: ByteBuffer?
    /// Where records are decrypted before their plaintext is appended to the caller's buffer. Reading
    /// straight into that buffer would need 16 KiB free for every record, which grows a buffer that
    /// holds a few DNS replies to 64 KiB or more, and frees it again, on every read.
    private let recordScratch: UnsafeMutableRawBufferPointer
    /// The name GnuTLS verifies the certificate against. GnuTLS keeps the pointer, so the session owns
    /// this copy for its whole lifetime.
    private let verificationName: UnsafeMutablePointer<CChar>?
    /// What GnuTLS verifies the certificate against: the name and the server key purpose. GnuTLS keeps
    /// the pointer to the array and to its strings, so the session owns them for its whole lifetime.
    private var verificationData: UnsafeMutablePointer<gnutls_typed_vdata_st>?
    /// The server key purpose OID (`GNUTLS_KP_TLS_WWW_SERVER`), owned like ``verificationName``.
    private var serverKeyPurpose: UnsafeMutablePointer<CChar>?
    private var isDeinitialized = false
    /// The credentials and priority cache GnuTLS points into; they must outlive the session.
    private let retainedContext: AnyObject

    /// Creates a session with the given role flags, priorities and credentials, wired to the memory
    /// transport. `context` is kept alive for as long as the session, because GnuTLS points into it.
    private init(
        flags: UInt32,
        priority: gnutls_priority_t,
        credentials: gnutls_certificate_credentials_t,
        context: AnyObject,
        verificationName: String?
    ) throws(GnuTLSError) {
        var session: gnutls_session_t?
        let status = gnutls_init(&session, flags)
        guard status == GNUTLS_E_SUCCESS, let session else {
            throw GnuTLSError(code: status, operation: "init session")
        }
        self.session = session
        self.inbound = ByteBuffer()
        self.outbound = nil
        self.recordScratch = .allocate(byteCount: 16_384, alignment: 16)
        self.verificationName = verificationName.map { strdup($0) }
        self.retainedContext = context
        try configureTransport()
        try check(gnutls_priority_set(session, priority), "set priority")
        try check(
            gnutls_credentials_set(session, GNUTLS_CRD_CERTIFICATE, UnsafeMutableRawPointer(credentials)),
            "set credentials"
        )
    }

    /// Creates a client session.
    ///
    /// - Parameters:
    ///   - context: Shared credentials and priorities.
    ///   - serverName: The authentication name. A DNS name is sent as SNI and verified; an IP address
    ///     literal is verified against the certificate's IP addresses and not sent as SNI.
    ///   - resumptionData: Session data from an earlier connection to the same upstream.
    convenience init(client context: TLSClientContext, serverName: String, resumptionData: [UInt8]?) throws(GnuTLSError)
    {
        try self.init(
            flags: dotproxy_gnutls_client_init_flags(),
            priority: context.priority,
            credentials: context.credentials,
            context: context,
            verificationName: context.configuration.verification.authenticates ? serverName : nil
        )
        if IPv4Address(serverName) == nil && IPv6Address(serverName) == nil && !serverName.isEmpty {
            try check(gnutls_server_name_set(session, GNUTLS_NAME_DNS, serverName, serverName.utf8.count), "set SNI")
        }
        if let verificationName {
            // The name (matched in subjectAltName; see `peerNamesServerInSubjectAltName`) and the key
            // purpose: a certificate whose Extended Key Usage leaves out serverAuth is rejected.
            let purpose = strdup(Self.serverAuthenticationPurpose)
            let data = UnsafeMutablePointer<gnutls_typed_vdata_st>.allocate(capacity: 2)
            data[0] = gnutls_typed_vdata_st(
                type: GNUTLS_DT_DNS_HOSTNAME,
                data: UnsafeMutableRawPointer(verificationName).assumingMemoryBound(to: UInt8.self),
                size: 0
            )
            data[1] = gnutls_typed_vdata_st(
                type: GNUTLS_DT_KEY_PURPOSE_OID,
                data: UnsafeMutableRawPointer(purpose)?.assumingMemoryBound(to: UInt8.self),
                size: 0
            )
            serverKeyPurpose = purpose
            verificationData = data
            gnutls_session_set_verify_cert2(session, data, 2, 0)
        }
        if let resumptionData, !resumptionData.isEmpty {
            // A stale or foreign ticket is not fatal: the handshake simply does not resume.
            _ = resumptionData.withUnsafeBytes { gnutls_session_set_data(session, $0.baseAddress, $0.count) }
        }
    }

    /// Creates a server session: the context's certificate, ALPN "dot" offered (not required) and,
    /// when the context issues them, session tickets under its rotating key.
    convenience init(server context: TLSServerContext) throws(GnuTLSError) {
        try self.init(
            flags: dotproxy_gnutls_server_init_flags(),
            priority: context.priority,
            credentials: context.credentials,
            context: context,
            verificationName: nil
        )
        if let ticketKey = context.ticketKey {
            try check(gnutls_session_ticket_enable_server(session, ticketKey), "enable session tickets")
            gnutls_db_set_cache_expiration(session, Int32(TLSServerContext.sessionTicketLifetimeSeconds))
        }
        // GnuTLS copies the protocol names into the session.
        var name = Array(TLSServerContext.alpnProtocol.utf8)
        let status = name.withUnsafeMutableBufferPointer { bytes in
            var datum = gnutls_datum_t(data: bytes.baseAddress, size: UInt32(bytes.count))
            return gnutls_alpn_set_protocols(session, &datum, 1, 0)
        }
        try check(status, "set ALPN")
    }

    private func configureTransport() throws(GnuTLSError) {
        // The callbacks run only inside GnuTLS calls made by this object, on its own thread, so an
        // unretained reference is always valid while they run; deinit tears the session down first.
        gnutls_transport_set_ptr(session, Unmanaged.passUnretained(self).toOpaque())
        gnutls_transport_set_push_function(session, gnutlsPush)
        gnutls_transport_set_pull_function(session, gnutlsPull)
        gnutls_transport_set_pull_timeout_function(session, gnutlsPullTimeout)
    }

    private func check(_ status: Int32, _ operation: String) throws(GnuTLSError) {
        guard status >= 0 else {
            deinitialize()
            throw GnuTLSError(code: status, operation: operation)
        }
    }

    /// The TLS server authentication key purpose, id-kp-serverAuth (RFC 5280 §4.2.1.12); GnuTLS's
    /// `GNUTLS_KP_TLS_WWW_SERVER` is a macro that does not import.
    static let serverAuthenticationPurpose = "1.3.6.1.5.5.7.3.1"

    deinit {
        deinitialize()
        free(verificationName)
        free(serverKeyPurpose)
        verificationData?.deallocate()
        recordScratch.deallocate()
    }

    private func deinitialize() {
        guard !isDeinitialized else { return }
        isDeinitialized = true
        gnutls_deinit(session)
    }

    // MARK: Ciphertext

    /// Hands ciphertext read from the channel to GnuTLS.
    func feedCiphertext(_ bytes: inout ByteBuffer) {
        if inbound.readableBytes == 0 && inbound.readerIndex > 0 { inbound.clear() }
        inbound.writeBuffer(&bytes)
    }

    /// Ciphertext that GnuTLS produced and that must be written to the channel, if any.
    func takeCiphertext() -> ByteBuffer? {
        guard let bytes = outbound.take(), bytes.readableBytes > 0 else { return nil }
        return bytes
    }

    fileprivate func push(_ data: UnsafeRawPointer?, _ size: Int) -> Int {
        guard let data else { return 0 }
        if outbound == nil { outbound = ByteBufferAllocator().buffer(capacity: max(size, 1024)) }
        outbound!.writeBytes(UnsafeRawBufferPointer(start: data, count: size))
        return size
    }

    fileprivate func pull(_ data: UnsafeMutableRawPointer?, _ size: Int) -> Int {
        guard inbound.readableBytes > 0, let data else {
            gnutls_transport_set_errno(session, EAGAIN)
            return -1
        }
        let count = min(size, inbound.readableBytes)
        inbound.readWithUnsafeReadableBytes { source in
            data.copyMemory(from: source.baseAddress!, byteCount: count)
            return count
        }
        return count
    }

    fileprivate var hasInbound: Bool { inbound.readableBytes > 0 }

    // MARK: Engine

    private func outcome(_ status: Int32, _ operation: String) -> Outcome {
        if status >= 0 { return .complete }
        if status == GNUTLS_E_AGAIN || status == GNUTLS_E_INTERRUPTED { return .incomplete }
        if gnutls_error_is_fatal(status) == 0 { return .incomplete }
        return .failed(GnuTLSError(code: status, operation: operation))
    }

    /// Advances the handshake as far as the buffered bytes allow.
    func handshake() -> Outcome {
        outcome(gnutls_handshake(session), "handshake")
    }

    /// Encrypts `plaintext`. Pushed ciphertext is collected for ``takeCiphertext()``.
    func write(_ plaintext: ByteBuffer) -> Outcome {
        var remaining = plaintext
        while remaining.readableBytes > 0 {
            let sent = remaining.withUnsafeReadableBytes { gnutls_record_send(session, $0.baseAddress, $0.count) }
            if sent < 0 {
                let result = outcome(Int32(truncatingIfNeeded: sent), "record send")
                if case .failed = result { return result }
                // With a push function that always accepts, "again" means nothing was consumed; retry.
                continue
            }
            remaining.moveReaderIndex(forwardBy: sent)
        }
        return .complete
    }

    /// Holds records back until ``uncork()``, so that a burst of writes becomes few records.
    func cork() { gnutls_record_cork(session) }

    /// Releases corked records.
    func uncork() -> Outcome {
        let status = gnutls_record_uncork(session, 0)
        return status >= 0 ? .complete : outcome(Int32(truncatingIfNeeded: status), "record send")
    }

    private var bufferedBeforeLastAttempt = -1

    /// Decrypts every record the buffered ciphertext holds, appending the plaintext to `plaintext`.
    func read(into plaintext: inout ByteBuffer) -> ReadOutcome {
        // Plaintext is never longer than the ciphertext it came from: one allocation for the whole read.
        plaintext.reserveCapacity(minimumWritableBytes: inbound.readableBytes)
        while true {
            let status = gnutls_record_recv(session, recordScratch.baseAddress, recordScratch.count)
            if status > 0 {
                plaintext.writeBytes(UnsafeRawBufferPointer(rebasing: recordScratch[..<status]))
                continue
            }
            if status == 0 { return .closed }
            switch outcome(Int32(truncatingIfNeeded: status), "record receive") {
            case .complete, .incomplete:
                // A post-handshake message (a TLS 1.3 session ticket, a key update) also ends in "again",
                // although records may still be buffered behind it. Go on while GnuTLS makes progress.
                let buffered = inbound.readableBytes
                if buffered > 0 && buffered != bufferedBeforeLastAttempt {
                    bufferedBeforeLastAttempt = buffered
                    continue
                }
                bufferedBeforeLastAttempt = -1
                return .incomplete
            case .failed(let error):
                return .failed(error)
            }
        }
    }

    /// Sends close_notify.
    func bye() -> Outcome {
        outcome(gnutls_bye(session, GNUTLS_SHUT_WR), "bye")
    }

    // MARK: Facts about the session

    var isResumed: Bool { gnutls_session_is_resumed(session) != 0 }

    var protocolName: String {
        guard let name = gnutls_protocol_get_name(gnutls_protocol_get_version(session)) else { return "unknown" }
        return String(cString: name)
    }

    /// The ALPN protocol both sides agreed on, if any.
    var negotiatedProtocol: String? {
        var datum = gnutls_datum_t(data: nil, size: 0)
        guard gnutls_alpn_get_selected_protocol(session, &datum) == GNUTLS_E_SUCCESS, let data = datum.data else {
            return nil
        }
        return String(decoding: UnsafeBufferPointer(start: data, count: Int(datum.size)), as: UTF8.self)
    }

    var cipherName: String {
        guard let name = gnutls_cipher_get_name(gnutls_cipher_get(session)) else { return "unknown" }
        return String(cString: name)
    }

    /// Whether a TLS 1.3 session ticket has arrived, so that ``resumptionData`` is worth keeping.
    var hasSessionTicket: Bool {
        gnutls_session_get_flags(session) & UInt32(GNUTLS_SFLAGS_SESSION_TICKET.rawValue) != 0
    }

    /// Data to resume this session on a later connection, if GnuTLS has any.
    var resumptionData: [UInt8]? {
        var datum = gnutls_datum_t(data: nil, size: 0)
        guard gnutls_session_get_data2(session, &datum) == GNUTLS_E_SUCCESS, let data = datum.data else { return nil }
        defer { dotproxy_gnutls_free(data) }
        return Array(UnsafeBufferPointer(start: data, count: Int(datum.size)))
    }

    /// The verification status bits of the last handshake (`GNUTLS_CERT_*`).
    var verificationStatus: UInt32 { gnutls_session_get_verify_cert_status(session) }

    /// GnuTLS's own description of a verification status.
    static func describe(verificationStatus status: UInt32) -> String {
        var datum = gnutls_datum_t(data: nil, size: 0)
        guard gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &datum, 0) == GNUTLS_E_SUCCESS,
            let data = datum.data
        else { return "status 0x\(String(status, radix: 16))" }
        defer { dotproxy_gnutls_free(data) }
        return String(decoding: UnsafeBufferPointer(start: data, count: Int(datum.size)), as: UTF8.self)
    }

    /// Whether the peer's certificate carries a subjectAltName of the kind the verified name needs: an
    /// IP address for an IP literal, a DNS name otherwise. GnuTLS falls back to the subject's common
    /// name when a certificate has none, which RFC 9525 §6.3 forbids; with one present, GnuTLS has
    /// matched the name against the subjectAltNames only. `true` when nothing is verified.
    func peerNamesServerInSubjectAltName() -> Bool {
        guard let verificationName else { return true }
        let name = String(cString: verificationName)
        let wanted = IPv4Address(name) != nil || IPv6Address(name) != nil ? GNUTLS_SAN_IPADDRESS : GNUTLS_SAN_DNSNAME
        var count: UInt32 = 0
        guard let list = gnutls_certificate_get_peers(session, &count), count > 0 else { return false }
        var der = list[0]
        var certificate: gnutls_x509_crt_t?
        guard gnutls_x509_crt_init(&certificate) == GNUTLS_E_SUCCESS, let certificate else { return false }
        defer { gnutls_x509_crt_deinit(certificate) }
        guard gnutls_x509_crt_import(certificate, &der, GNUTLS_X509_FMT_DER) == GNUTLS_E_SUCCESS else { return false }
        var buffer = [UInt8](repeating: 0, count: 256)
        for sequence in 0..<UInt32(1024) {
            var size = buffer.count
            let kind = gnutls_x509_crt_get_subject_alt_name(certificate, sequence, &buffer, &size, nil)
            if kind == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE { return false }
            if kind == Int32(wanted.rawValue) { return true }
            // A name longer than the buffer still tells its kind.
            if kind == GNUTLS_E_SHORT_MEMORY_BUFFER {
                buffer = [UInt8](repeating: 0, count: size)
                var retry = size
                if gnutls_x509_crt_get_subject_alt_name(certificate, sequence, &buffer, &retry, nil)
                    == Int32(wanted.rawValue)
                {
                    return true
                }
            } else if kind < 0 {
                return false
            }
        }
        return false
    }

    /// The SHA-256 digests of the SubjectPublicKeyInfo of every certificate the peer sent.
    func peerSPKIDigests() -> [[UInt8]] {
        var count: UInt32 = 0
        guard let list = gnutls_certificate_get_peers(session, &count) else { return [] }
        var digests: [[UInt8]] = []
        for index in 0..<Int(count) {
            var certificate = list[index]
            var pubkey: gnutls_pubkey_t?
            guard gnutls_pubkey_init(&pubkey) == GNUTLS_E_SUCCESS, let pubkey else { continue }
            defer { gnutls_pubkey_deinit(pubkey) }
            guard importFromCertificate(pubkey, &certificate) else { continue }
            var spki = gnutls_datum_t(data: nil, size: 0)
            guard gnutls_pubkey_export2(pubkey, GNUTLS_X509_FMT_DER, &spki) == GNUTLS_E_SUCCESS,
                let spkiData = spki.data
            else { continue }
            defer { dotproxy_gnutls_free(spkiData) }
            var digest = [UInt8](repeating: 0, count: 32)
            guard gnutls_hash_fast(GNUTLS_DIG_SHA256, spkiData, Int(spki.size), &digest) == GNUTLS_E_SUCCESS else {
                continue
            }
            digests.append(digest)
        }
        return digests
    }

    private func importFromCertificate(_ pubkey: gnutls_pubkey_t, _ der: inout gnutls_datum_t) -> Bool {
        var certificate: gnutls_x509_crt_t?
        guard gnutls_x509_crt_init(&certificate) == GNUTLS_E_SUCCESS, let certificate else { return false }
        defer { gnutls_x509_crt_deinit(certificate) }
        guard gnutls_x509_crt_import(certificate, &der, GNUTLS_X509_FMT_DER) == GNUTLS_E_SUCCESS else { return false }
        return gnutls_pubkey_import_x509(pubkey, certificate, 0) == GNUTLS_E_SUCCESS
    }
}

// MARK: C callbacks

private func session(from pointer: gnutls_transport_ptr_t?) -> GnuTLSSession {
    Unmanaged<GnuTLSSession>.fromOpaque(pointer!).takeUnretainedValue()
}

private func gnutlsPush(_ pointer: gnutls_transport_ptr_t?, _ data: UnsafeRawPointer?, _ size: Int) -> Int {
    session(from: pointer).push(data, size)
}

private func gnutlsPull(_ pointer: gnutls_transport_ptr_t?, _ data: UnsafeMutableRawPointer?, _ size: Int) -> Int {
    session(from: pointer).pull(data, size)
}

private func gnutlsPullTimeout(_ pointer: gnutls_transport_ptr_t?, _ milliseconds: UInt32) -> Int32 {
    // Non-blocking: report whether data is buffered now, never wait.
    session(from: pointer).hasInbound ? 1 : 0
}
