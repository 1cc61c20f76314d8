@testable import DoTCore
import Testing

@Suite struct TCPConnectionLimiterTests {
    @Test func capsConnectionsInTotalAndPerClient() {
        let limiter = TCPConnectionLimiter(maximumTotal: 3, maximumPerClient: 2)
        #expect(limiter.admit("192.0.2.1") && limiter.admit("192.0.2.1"))
        #expect(!limiter.admit("192.0.2.1"), "a third connection from one client")
        #expect(limiter.admit("192.0.2.2"))
        #expect(!limiter.admit("192.0.2.3"), "the total cap")
        limiter.release("192.0.2.1")
        #expect(limiter.openConnections == 2)
        #expect(limiter.admit("192.0.2.3"))
        #expect(!limiter.admit("192.0.2.1"), "total is full again")
        limiter.release("192.0.2.2")
        limiter.release("192.0.2.3")
        limiter.release("192.0.2.1")
        #expect(limiter.openConnections == 0)
        #expect(limiter.admit("192.0.2.1") && limiter.admit("192.0.2.1"))
    }
}
