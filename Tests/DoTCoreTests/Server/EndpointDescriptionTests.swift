import DoTCore
import NIOCore
import Testing

@Suite struct EndpointDescriptionTests {
    @Test func addressesPrintAsPeopleWriteThem() throws {
        #expect(try SocketAddress(ipAddress: "127.0.0.1", port: 53).endpointDescription == "127.0.0.1:53")
        #expect(try SocketAddress(ipAddress: "::1", port: 5053).endpointDescription == "[::1]:5053")
    }
}

@Suite struct UpstreamAddressNotationTests {
    @Test func theNotationRoundTripsThroughItsDescription() throws {
        for text in ["9.9.9.9:853#dns.quad9.net", "[2620:fe::fe]:853#dns.quad9.net", "127.0.0.1:8853", "[::1]:853"] {
            let address = try #require(UpstreamAddress(text), "\(text)")
            #expect(address.description == text)
        }
        #expect(UpstreamAddress("9.9.9.9")?.port == 853 && UpstreamAddress("9.9.9.9")?.authenticationName == nil)
        #expect(UpstreamAddress("2620:00fe::00fe")?.host == "2620:fe::fe", "IPv6 in canonical form")
    }

    @Test func whatIsNotAnAddressIsRefused() {
        for bad in [
            "dns.quad9.net", "9.9.9.9:0", "9.9.9.9:70000", "[::1", "[::1]x", "9.9.9.9#", "9.9.9.9#bad..name", "1.2.3",
        ] {
            #expect(UpstreamAddress(bad) == nil, "\(bad)")
        }
    }
}
