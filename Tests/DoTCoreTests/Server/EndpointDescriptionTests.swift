import DoTCore
import NIOCore
import Testing

@Suite struct EndpointDescriptionTests {
    @Test func addressesPrintAsPeopleWriteThem() throws {
        #expect(try SocketAddress(ipAddress: "127.0.0.1", port: 53).endpointDescription == "127.0.0.1:53")
        #expect(try SocketAddress(ipAddress: "::1", port: 5053).endpointDescription == "[::1]:5053")
    }
}
