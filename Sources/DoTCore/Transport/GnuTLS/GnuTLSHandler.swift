internal import CGnuTLS
import NIOCore

/// A channel handler that runs a GnuTLS session over the channel's bytes: ciphertext below,
/// plaintext above.
///
/// It is a thin shell: `TLSConnectionStateMachine` decides, `GnuTLSSession` does the cryptography,
/// and this class moves bytes and performs actions. Writes made before the handshake completes are
/// buffered. Writes are encrypted on flush, corked together, so a burst of pipelined queries leaves as
/// few TLS records as possible.
///
/// Events it sends up the pipeline: `TLSHandshakeCompleted` and `TLSSessionTicketReceived` as user
/// events, and `TLSHandshakeFailure` or `GnuTLSError` as errors (after which it closes the channel).
package final class GnuTLSHandler: ChannelDuplexHandler, RemovableChannelHandler {
    package typealias InboundIn = ByteBuffer
    package typealias InboundOut = ByteBuffer
    package typealias OutboundIn = ByteBuffer
    package typealias OutboundOut = ByteBuffer

    private var stateMachine = TLSConnectionStateMachine()
    private let session: GnuTLSSession
    private let pins: Set<SPKIPin>
    private var waitingForHandshake: [(ByteBuffer, EventLoopPromise<Void>?)] = []
    private var waitingForFlush: [(ByteBuffer, EventLoopPromise<Void>?)] = []
    private var ticketReported = false
    private var plaintext: ByteBuffer

    /// A client handler.
    ///
    /// - Parameters:
    ///   - context: Shared credentials and priorities.
    ///   - serverName: The authentication name (or IP literal) to verify and send as SNI.
    ///   - resumptionData: Session data from an earlier connection, to resume.
    package init(client context: TLSClientContext, serverName: String, resumptionData: [UInt8]?) throws(GnuTLSError) {
        self.session = try GnuTLSSession(client: context, serverName: serverName, resumptionData: resumptionData)
        self.pins = context.configuration.spkiPins
        self.plaintext = ByteBuffer()
    }

    /// A server handler: the listener's, and the in-process test server's.
    package init(server context: TLSServerContext) throws(GnuTLSError) {
        self.session = try GnuTLSSession(server: context)
        self.pins = []
        self.plaintext = ByteBuffer()
    }

    package func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { perform(stateMachine.channelActive(), context: context) }
    }

    package func channelActive(context: ChannelHandlerContext) {
        perform(stateMachine.channelActive(), context: context)
        context.fireChannelActive()
    }

    package func channelInactive(context: ChannelHandlerContext) {
        perform(stateMachine.channelInactive(), context: context)
        failBufferedWrites(ChannelError.ioOnClosedChannel)
        context.fireChannelInactive()
    }

    package func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        session.feedCiphertext(&bytes)
        perform(stateMachine.ciphertextReceived(), context: context)
    }

    package func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let bytes = unwrapOutboundIn(data)
        switch stateMachine.write() {
        case .bufferWrite: waitingForHandshake.append((bytes, promise))
        case .encryptWrite: waitingForFlush.append((bytes, promise))
        default: promise?.fail(ChannelError.ioOnClosedChannel)
        }
    }

    package func flush(context: ChannelHandlerContext) {
        encryptAndFlush(context: context)
    }

    package func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        guard mode == .all else {
            context.close(mode: mode, promise: promise)
            return
        }
        switch stateMachine.closeRequested() {
        case .sendCloseNotifyAndClose:
            encryptAndFlush(context: context)
            _ = session.bye()
            writeCiphertext(context: context, flush: true)
        default:
            break
        }
        context.close(mode: mode, promise: promise)
    }

    // MARK: Actions

    private func perform(_ action: TLSConnectionStateMachine.Action, context: ChannelHandlerContext) {
        switch action {
        case .driveHandshake:
            driveHandshake(context: context)
        case .completeHandshake:
            let digests = pins.isEmpty ? [] : session.peerSPKIDigests()
            let pinsMatch = pins.isEmpty || digests.contains { digest in pins.contains { $0.digest == digest } }
            perform(
                stateMachine.handshakeVerified(
                    pinsMatch: pinsMatch,
                    nameInSubjectAltName: session.peerNamesServerInSubjectAltName()
                ),
                context: context
            )
        case .flushBufferedWrites:
            context.fireUserInboundEventTriggered(
                TLSHandshakeCompleted(
                    protocolName: session.protocolName,
                    cipherName: session.cipherName,
                    resumed: session.isResumed,
                    applicationProtocol: session.negotiatedProtocol
                )
            )
            waitingForFlush.append(contentsOf: waitingForHandshake)
            waitingForHandshake.removeAll()
            encryptAndFlush(context: context)
            // Application data may have arrived together with the last handshake flight.
            readRecords(context: context)
        case .readRecords:
            readRecords(context: context)
        case .fail(let failure):
            fail(failure, context: context)
        case .closeChannel:
            context.close(promise: nil)
        case .sendCloseNotifyAndClose:
            _ = session.bye()
            writeCiphertext(context: context, flush: true)
            context.close(promise: nil)
        case .bufferWrite, .encryptWrite, .failWrite, .none:
            break
        }
    }

    /// The last error the engine reported, kept to explain a failure to the pipeline.
    private var lastError: GnuTLSError?

    private func driveHandshake(context: ChannelHandlerContext) {
        let outcome = session.handshake()
        writeCiphertext(context: context, flush: true)
        switch outcome {
        case .complete:
            perform(stateMachine.handshakeOutcome(complete: true, failed: false), context: context)
        case .incomplete:
            break
        case .failed(let error):
            lastError = error
            perform(stateMachine.handshakeOutcome(complete: false, failed: true), context: context)
        }
    }

    private func readRecords(context: ChannelHandlerContext) {
        let outcome = session.read(into: &plaintext)
        if plaintext.readableBytes > 0 {
            context.fireChannelRead(wrapInboundOut(plaintext))
            // Keep the storage for the next read when the pipeline kept no reference to it (the usual
            // case: every frame was copied out); a large one left by a burst is let go.
            if plaintext.capacity <= 16_384 { plaintext.clear() } else { plaintext = ByteBuffer() }
        }
        if !ticketReported, session.hasSessionTicket, let data = session.resumptionData {
            ticketReported = true
            context.fireUserInboundEventTriggered(TLSSessionTicketReceived(resumptionData: data))
        }
        // Post-handshake messages (key updates) may need an answer.
        writeCiphertext(context: context, flush: true)
        switch outcome {
        case .incomplete:
            break
        case .closed:
            perform(stateMachine.peerClosed(), context: context)
        case .failed(let error):
            lastError = error
            perform(stateMachine.recordFailed(), context: context)
        }
    }

    private func encryptAndFlush(context: ChannelHandlerContext) {
        guard !waitingForFlush.isEmpty else {
            context.flush()
            return
        }
        // Encrypted from the array in place and emptied after, keeping its storage: copying it out
        // first and then emptying it made a new array on every flush.
        session.cork()
        var failure: GnuTLSError?
        for (bytes, _) in waitingForFlush {
            if case .failed(let error) = session.write(bytes) {
                failure = error
                break
            }
        }
        if failure == nil, case .failed(let error) = session.uncork() { failure = error }
        let promises = waitingForFlush.compactMap(\.1)
        waitingForFlush.removeAll(keepingCapacity: true)
        if let failure {
            promises.forEach { $0.fail(failure) }
            lastError = failure
            perform(stateMachine.recordFailed(), context: context)
            return
        }
        if promises.isEmpty {
            writeCiphertext(context: context, flush: true)
        } else {
            let written = context.eventLoop.makePromise(of: Void.self)
            for promise in promises { written.futureResult.cascade(to: promise) }
            writeCiphertext(context: context, flush: true, promise: written)
        }
    }

    private func writeCiphertext(context: ChannelHandlerContext, flush: Bool, promise: EventLoopPromise<Void>? = nil) {
        if let ciphertext = session.takeCiphertext() {
            context.write(wrapOutboundOut(ciphertext), promise: promise)
        } else {
            promise?.succeed()
        }
        if flush { context.flush() }
    }

    private func fail(_ failure: TLSConnectionStateMachine.TLSFailure, context: ChannelHandlerContext) {
        var report = TLSHandshakeFailure(error: lastError)
        switch failure {
        case .handshake:
            if lastError?.code == Int(GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR) {
                let status = session.verificationStatus
                report.certificateStatus = status
                report.certificateStatusDescription = GnuTLSSession.describe(verificationStatus: status)
            }
        case .pinMismatch:
            report.pinMismatch = true
        case .nameNotInSubjectAltName:
            report.certificateStatusDescription =
                "The certificate names the server only in its subject's common name, with no subjectAltName of that kind (RFC 9525 forbids the fallback)."
        case .closedDuringHandshake:
            report.closedEarly = true
        case .record:
            break
        }
        let error: any Error =
            failure == .record
            ? (lastError ?? GnuTLSError(message: "record layer failed", operation: "record receive")) : report
        failBufferedWrites(error)
        context.fireErrorCaught(error)
        context.close(promise: nil)
    }

    private func failBufferedWrites(_ error: any Error) {
        let writes = waitingForHandshake + waitingForFlush
        waitingForHandshake.removeAll()
        waitingForFlush.removeAll()
        for (_, promise) in writes { promise?.fail(error) }
    }
}

@available(*, unavailable)
extension GnuTLSHandler: Sendable {}
