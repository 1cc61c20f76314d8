import Testing

@testable import DoTCore

@Suite struct TCPConnectionLimiterTests {
    @Test func capsConnectionsInTotalAndPerClient() {
        func address(_ last: UInt8) -> ClientAddress { ClientAddress(IPv4Address(192, 0, 2, last)) }
        let limiter = TCPConnectionLimiter(maximumTotal: 3, maximumPerClient: 2)
        #expect(limiter.admit(address(1)) && limiter.admit(address(1)))
        #expect(!limiter.admit(address(1)), "a third connection from one client")
        #expect(limiter.admit(address(2)))
        #expect(!limiter.admit(address(3)), "the total cap")
        limiter.release(address(1))
        #expect(limiter.openConnections == 2)
        #expect(limiter.admit(address(3)))
        #expect(!limiter.admit(address(1)), "total is full again")
        limiter.release(address(2))
        limiter.release(address(3))
        limiter.release(address(1))
        #expect(limiter.openConnections == 0)
        #expect(limiter.admit(address(1)) && limiter.admit(address(1)))
    }

    @Test func countsAnIPv6Slash64AsOneClientAndSaysWhenMoreThanHalfAreTaken() {
        let slots = TCPConnectionLimiter(maximumTotal: 6, maximumPerClient: 2)
        let first = ClientAddress(IPv6Address("2001:db8:1:2::1")!)
        let sameHost = ClientAddress(IPv6Address("2001:db8:1:2:ffff::9")!)
        let otherHost = ClientAddress(IPv6Address("2001:db8:1:3::1")!)
        #expect(slots.admit(first) && slots.admit(sameHost))
        #expect(!slots.admit(sameHost) && !slots.admit(first))
        #expect(slots.admit(otherHost) && !slots.isBusy)
        #expect(slots.admit(otherHost) && slots.isBusy)
        slots.release(first)
        #expect(!slots.isBusy && slots.admit(sameHost))
    }
}
