import Testing

@testable import DoTCore

/// The TLS handler's decisions as plain values, with no I/O.
@Suite struct TLSConnectionStateMachineTests {
    @Test func aSuccessfulHandshakeThenTraffic() {
        var machine = TLSConnectionStateMachine()
        #expect(machine.write() == .bufferWrite)
        #expect(machine.channelActive() == .driveHandshake)
        #expect(machine.state == .handshaking)
        #expect(machine.channelActive() == .none)
        #expect(machine.ciphertextReceived() == .driveHandshake)
        #expect(machine.handshakeOutcome(complete: false, failed: false) == .none)
        #expect(machine.handshakeOutcome(complete: true, failed: false) == .completeHandshake)
        #expect(machine.handshakeVerified(pinsMatch: true, nameInSubjectAltName: true) == .flushBufferedWrites)
        #expect(machine.state == .active)
        #expect(machine.write() == .encryptWrite)
        #expect(machine.ciphertextReceived() == .readRecords)
        #expect(machine.closeRequested() == .sendCloseNotifyAndClose)
        #expect(machine.state == .closing)
        #expect(machine.write() == .failWrite)
        #expect(machine.channelInactive() == .none)
        #expect(machine.state == .closed)
        #expect(machine.ciphertextReceived() == .none)
    }

    @Test func failuresCloseAndNeverReachActive() {
        var handshake = TLSConnectionStateMachine()
        _ = handshake.channelActive()
        #expect(handshake.handshakeOutcome(complete: false, failed: true) == .fail(.handshake))
        #expect(handshake.state == .closed && handshake.write() == .failWrite)

        var pins = TLSConnectionStateMachine()
        _ = pins.channelActive()
        _ = pins.handshakeOutcome(complete: true, failed: false)
        #expect(pins.handshakeVerified(pinsMatch: false, nameInSubjectAltName: true) == .fail(.pinMismatch))
        #expect(pins.state == .closed)

        var commonNameOnly = TLSConnectionStateMachine()
        _ = commonNameOnly.channelActive()
        _ = commonNameOnly.handshakeOutcome(complete: true, failed: false)
        #expect(
            commonNameOnly.handshakeVerified(pinsMatch: true, nameInSubjectAltName: false)
                == .fail(.nameNotInSubjectAltName)
        )
        #expect(commonNameOnly.state == .closed && commonNameOnly.write() == .failWrite)

        var early = TLSConnectionStateMachine()
        _ = early.channelActive()
        #expect(early.channelInactive() == .fail(.closedDuringHandshake))

        var record = TLSConnectionStateMachine()
        _ = record.channelActive()
        _ = record.handshakeOutcome(complete: true, failed: false)
        _ = record.handshakeVerified(pinsMatch: true, nameInSubjectAltName: true)
        #expect(record.recordFailed() == .fail(.record))
        #expect(record.recordFailed() == .none)
    }

    @Test func peerCloseAndEarlyClose() {
        var machine = TLSConnectionStateMachine()
        _ = machine.channelActive()
        _ = machine.handshakeOutcome(complete: true, failed: false)
        _ = machine.handshakeVerified(pinsMatch: true, nameInSubjectAltName: true)
        #expect(machine.peerClosed() == .closeChannel)
        #expect(machine.state == .closing)
        #expect(machine.peerClosed() == .none)

        var idle = TLSConnectionStateMachine()
        #expect(idle.closeRequested() == .closeChannel)
        #expect(idle.state == .closed)
        #expect(idle.handshakeVerified(pinsMatch: true, nameInSubjectAltName: true) == .none)
    }
}
