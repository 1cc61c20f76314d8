import DoTCore
import DoTCoreTesting
import Foundation
import NIOCore
import NIOPosix
import Testing

/// The test doubles themselves: if they lie, every test built on them lies.
@Suite struct TestDoublesTests {
    @Test func fixtureCertificatesAreWrittenAndPinsParse() throws {
        for identity in [
            TestCertificates.server, TestCertificates.expired, TestCertificates.wrongName, TestCertificates.untrusted,
            TestCertificates.clientAuthenticationOnly, TestCertificates.commonNameOnly,
        ] {
            let certificate = try String(contentsOfFile: identity.certificateFile, encoding: .utf8)
            let key = try String(contentsOfFile: identity.keyFile, encoding: .utf8)
            #expect(certificate.contains("BEGIN CERTIFICATE") && key.contains("PRIVATE KEY"))
        }
        #expect(try String(contentsOfFile: TestCertificates.caFile, encoding: .utf8).contains("BEGIN CERTIFICATE"))
        #expect(SPKIPin(base64: TestCertificates.serverSPKIPin) != nil)
        #expect(TestCertificates.serverSPKIPin != TestCertificates.otherSPKIPin)
        let configuration = TestCertificates.clientConfiguration(pins: [TestCertificates.serverSPKIPin])
        #expect(configuration.verification == .strict && configuration.spkiPins.count == 1)
        #expect(try TLSClientContext(configuration: configuration).trustedCertificateCount == 1)
    }

    @Test func theScriptedServerAnswersAndCounts() async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        let server = try await TestDoTServer.start(group: group)
        let transport = try server.makeTransport()
        let query = DNSMessage.query(name: "a.test.", type: .a, id: 5)
        let reply = try DNSMessage(
            decoding: await transport.send(query.encoded(), timeout: .seconds(5), on: group.next())
        )
        #expect(
            reply
                == {
                    var expected = TestDoTServer.answer(query)
                    expected.edns = EDNSRecord(udpPayloadSize: 1232)
                    return expected
                }()
        )
        #expect(server.connectionCount == 1 && server.handshakeCount == 1 && server.queryCount == 1)
        await transport.shutdown()
        try await server.stop()
    }

    @Test func theStandardAnswerEchoesTheQuery() {
        let query = DNSMessage.query(name: "Case.Test.", type: .aaaa, id: 77, edns: nil)
        let answer = TestDoTServer.answer(query)
        #expect(answer.header.id == 77 && answer.header.isResponse && answer.questions == query.questions)
        #expect(answer.answers.isEmpty && answer.edns == nil)
    }

    @Test func theUnboundRigServesItsZone() async throws {
        let rig = try UnboundRig()
        defer { rig.stop() }
        #expect(rig.dnsPort != rig.dotPort && rig.serverName == "dns.test")
        #expect(SPKIPin(base64: rig.spkiPin) != nil)
        let reply = try DNSMessage(
            decoding: await TestDNSClient.udp(
                DNSMessage.query(name: "x.unique.test.", type: .a, id: 3).encoded(),
                port: rig.dnsPort,
                group: MultiThreadedEventLoopGroup.singleton
            )
        )
        #expect(reply.answers.first?.rdata == .a(IPv4Address(192, 0, 2, 99)))
        let outside = try DNSMessage(
            decoding: await TestDNSClient.udp(
                DNSMessage.query(name: "example.com.", type: .a, id: 4).encoded(),
                port: rig.dnsPort,
                group: MultiThreadedEventLoopGroup.singleton
            )
        )
        #expect(outside.header.responseCode == .nameError, "the rig must never recurse to the internet")
    }
}
