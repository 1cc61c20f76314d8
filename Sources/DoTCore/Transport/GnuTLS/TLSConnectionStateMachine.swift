/// The life of one TLS connection, as events in and actions out, with no I/O.
///
/// `GnuTLSHandler` feeds it channel events and engine outcomes and performs the actions it returns,
/// so every transition can be tested as plain values.
struct TLSConnectionStateMachine {
    enum State: Equatable {
        /// Added to a channel that is not active yet.
        case idle
        case handshaking
        case active
        /// close_notify sent or received; waiting for the channel to close.
        case closing
        case closed
    }

    enum Action: Equatable {
        /// Call the engine's handshake again and write what it produced.
        case driveHandshake
        /// Handshake finished: check pins, then report success.
        case completeHandshake
        /// Decrypt what arrived and pass the plaintext on.
        case readRecords
        /// Keep the write until the handshake completes.
        case bufferWrite
        /// Encrypt the write now.
        case encryptWrite
        /// Fail the write: the connection cannot carry it.
        case failWrite
        /// Encrypt writes that waited for the handshake.
        case flushBufferedWrites
        /// Send close_notify, then close the channel.
        case sendCloseNotifyAndClose
        /// Close the channel without close_notify.
        case closeChannel
        /// Fail buffered writes and report the error to the pipeline.
        case fail(TLSFailure)
        /// Nothing to do.
        case none
    }

    /// Why a connection failed, as far as the state machine needs to know.
    enum TLSFailure: Equatable {
        case handshake
        case pinMismatch
        /// The certificate verified, but named the server only in its subject's common name.
        case nameNotInSubjectAltName
        case record
        case closedDuringHandshake
    }

    private(set) var state: State = .idle

    mutating func channelActive() -> Action {
        guard state == .idle else { return .none }
        state = .handshaking
        return .driveHandshake
    }

    mutating func handshakeOutcome(complete: Bool, failed: Bool) -> Action {
        guard state == .handshaking else { return .none }
        if failed {
            state = .closed
            return .fail(.handshake)
        }
        return complete ? .completeHandshake : .none
    }

    /// The handshake completed; `pinsMatch` is the result of the pin check (true when there are none),
    /// `nameInSubjectAltName` whether the certificate names the server in a subjectAltName (true when
    /// nothing is verified).
    mutating func handshakeVerified(pinsMatch: Bool, nameInSubjectAltName: Bool) -> Action {
        guard state == .handshaking else { return .none }
        guard nameInSubjectAltName else {
            state = .closed
            return .fail(.nameNotInSubjectAltName)
        }
        guard pinsMatch else {
            state = .closed
            return .fail(.pinMismatch)
        }
        state = .active
        return .flushBufferedWrites
    }

    mutating func ciphertextReceived() -> Action {
        switch state {
        case .idle:
            // Data before channelActive cannot happen on a client socket; start the handshake anyway.
            state = .handshaking
            return .driveHandshake
        case .handshaking: return .driveHandshake
        case .active, .closing: return .readRecords
        case .closed: return .none
        }
    }

    mutating func write() -> Action {
        switch state {
        case .idle, .handshaking: .bufferWrite
        case .active: .encryptWrite
        case .closing, .closed: .failWrite
        }
    }

    mutating func recordFailed() -> Action {
        guard state != .closed else { return .none }
        state = .closed
        return .fail(.record)
    }

    /// The peer sent close_notify.
    mutating func peerClosed() -> Action {
        switch state {
        case .active, .handshaking:
            state = .closing
            return .closeChannel
        case .idle, .closing, .closed:
            return .none
        }
    }

    mutating func closeRequested() -> Action {
        switch state {
        case .active:
            state = .closing
            return .sendCloseNotifyAndClose
        case .idle, .handshaking:
            state = .closed
            return .closeChannel
        case .closing, .closed:
            return .closeChannel
        }
    }

    mutating func channelInactive() -> Action {
        defer { state = .closed }
        switch state {
        case .handshaking: return .fail(.closedDuringHandshake)
        default: return .none
        }
    }
}
