import NIOCore
import NIOEmbedded
import Testing

@testable import DoTCore

/// How many reads a UDP listener makes per wake-up: one while reads come back short, many from the
/// first full one, and one again after a run of wake-ups without a full read.
@Suite struct DatagramReadBudgetTests {
    /// Ends a wake-up that read `datagrams` datagrams.
    func wakeUp(_ budget: inout DatagramReadBudget, datagrams: Int) -> UInt? {
        for _ in 0..<datagrams { budget.datagramRead() }
        return budget.wakeUpEnded()
    }

    @Test func shortReadsKeepOneReadPerWakeUp() {
        var budget = DatagramReadBudget(datagramsPerRead: 16, readsUnderLoad: 8)
        #expect(budget.readsPerWakeUp == 1)
        for datagrams in [1, 15, 0, 3] {
            #expect(wakeUp(&budget, datagrams: datagrams) == nil)
        }
        #expect(budget.readsPerWakeUp == 1)
    }

    @Test func aFullReadRaisesTheReadsUntilAQuietRunLowersThem() {
        var budget = DatagramReadBudget(datagramsPerRead: 16, readsUnderLoad: 8)
        #expect(wakeUp(&budget, datagrams: 16) == 8)
        #expect(wakeUp(&budget, datagrams: 100) == nil, "already raised")
        let quiet = DatagramReadBudget.quietWakeUpsBeforeSingleRead
        for _ in 1..<quiet { #expect(wakeUp(&budget, datagrams: 2) == nil) }
        // A full wake-up before the run ends starts the count again.
        #expect(wakeUp(&budget, datagrams: 17) == nil)
        for _ in 1..<quiet { #expect(wakeUp(&budget, datagrams: 15) == nil) }
        #expect(budget.readsPerWakeUp == 8)
        #expect(wakeUp(&budget, datagrams: 1) == 1)
        #expect(budget.readsPerWakeUp == 1)
        #expect(wakeUp(&budget, datagrams: 16) == 8, "and up again at the next full read")
    }

    @Test func theListenerSetsTheChannelsReadsPerWakeUp() throws {
        // Queries with IDs under 100 are answered at once.
        let channel = EmbeddedChannel(handler: UDPListenerHandler(handler: ReplyBatchingTests.HeldQueryHandler()))
        let client = ReplyBatchingTests.client
        let query = try DNSMessage.query(name: "a.test.", type: .a, id: 1).encoded()
        for _ in 0..<DNSProxyServer.datagramsPerRead {
            channel.pipeline.syncOperations.fireChannelRead(
                NIOAny(AddressedEnvelope(remoteAddress: client, data: query))
            )
        }
        channel.pipeline.syncOperations.fireChannelReadComplete()
        let raised: UInt? = try channel.syncOptions?.getOption(ChannelOptions.maxMessagesPerRead)
        #expect(raised == DNSProxyServer.readsPerWakeUpUnderLoad)

        for _ in 0..<DatagramReadBudget.quietWakeUpsBeforeSingleRead {
            try channel.writeInbound(AddressedEnvelope(remoteAddress: client, data: query))
        }
        let lowered: UInt? = try channel.syncOptions?.getOption(ChannelOptions.maxMessagesPerRead)
        #expect(lowered == 1)
        _ = try channel.finish(acceptAlreadyClosed: true)
    }
}
