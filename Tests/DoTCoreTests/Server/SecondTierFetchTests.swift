import DoTCore
import DoTCoreTesting
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing

/// The handler with a cache that has a slower second tier (``DNSResponseCache/fetch(_:key:on:)``):
/// asked once per miss, after the first tier and before the upstream.
@Suite struct SecondTierFetchTests {
    /// A first tier in memory and a "shared" second tier that another handler fills, whose fetches
    /// complete when the test releases them.
    final class TwoTierCache: DNSResponseCache {
        let memory = InMemoryDNSResponseCache()
        let shared: NIOLockedValueBox<[DNSCacheKey: ParsedDNSMessage]>
        private let gates = NIOLockedValueBox<[EventLoopPromise<Void>]>([])
        let fetches = NIOLockedValueBox(0)

        init(shared: NIOLockedValueBox<[DNSCacheKey: ParsedDNSMessage]>) { self.shared = shared }

        func lookup(_ query: ParsedDNSMessage, key: DNSCacheKey, now: NIODeadline) -> ByteBuffer? {
            memory.lookup(query, key: key, now: now)
        }

        func store(_ reply: ParsedDNSMessage, key: DNSCacheKey, now: NIODeadline) {
            memory.store(reply, key: key, now: now)
            shared.withLockedValue { $0[key] = reply }
        }

        func fetch(_ query: ParsedDNSMessage, key: DNSCacheKey, on eventLoop: any EventLoop) -> EventLoopFuture<Void>? {
            fetches.withLockedValue { $0 += 1 }
            let gate = eventLoop.makePromise(of: Void.self)
            gates.withLockedValue { $0.append(gate) }
            return gate.futureResult.map { [memory, shared] in
                if let reply = shared.withLockedValue({ $0[key] }) { memory.store(reply, key: key, now: .now()) }
            }
        }

        /// Completes every fetch waiting; returns how many there were.
        func release() -> Int {
            let waiting = gates.withLockedValue { gates in
                defer { gates = [] }
                return gates
            }
            for gate in waiting { gate.succeed() }
            return waiting.count
        }
    }

    let loop = MultiThreadedEventLoopGroup.singleton.next()

    func query(_ name: DNSName, id: UInt16) throws -> DNSClientQuery {
        DNSClientQuery(
            message: try DNSMessage.query(name: name, type: .a, id: id, edns: EDNSRecord()).encoded(),
            client: try SocketAddress(ipAddress: "127.0.0.1", port: 40000),
            clientProtocol: .udp
        )
    }

    @Test func aNameAnotherReplicaStoredIsAnsweredWithoutTheUpstreamForEveryWaitingClient() async throws {
        let shared = NIOLockedValueBox<[DNSCacheKey: ParsedDNSMessage]>([:])
        let firstUpstream = ScriptedUpstreamTransport()
        let firstCache = TwoTierCache(shared: shared)
        let first = ForwardingQueryHandler(transport: firstUpstream, cache: firstCache)
        let asked = first.handle(try query("a.test.", id: 1), on: loop)
        #expect(firstCache.fetches.withLockedValue { $0 } == 1)  // asked before handle returned
        #expect(firstCache.release() == 1)
        #expect(try await asked.get() != nil)
        #expect(firstUpstream.queryCount == 1)
        #expect(shared.withLockedValue { $0.count } == 1)

        // The second replica: two clients ask (the second in other case), one fetch, no upstream.
        let secondUpstream = ScriptedUpstreamTransport()
        let secondCache = TwoTierCache(shared: shared)
        let second = ForwardingQueryHandler(transport: secondUpstream, cache: secondCache)
        let one = second.handle(try query("a.test.", id: 2), on: loop)
        #expect(secondCache.fetches.withLockedValue { $0 } == 1)
        let two = second.handle(try query("A.TEST.", id: 3), on: loop)
        #expect(secondCache.release() == 1)
        let replies = try await [one.get(), two.get()].map { try DNSMessage(decoding: $0!) }
        #expect(replies.map(\.header.id) == [2, 3])
        #expect(replies[1].questions[0].name.description == "A.TEST.")
        #expect(replies.allSatisfy { $0.answers.count == 1 })
        #expect(secondUpstream.queryCount == 0)
        #expect(secondCache.fetches.withLockedValue { $0 } == 1)
        // Now in the first tier: answered at once, nothing fetched.
        guard case .now(let hit?) = second.respond(to: try query("a.test.", id: 4), on: loop) else {
            Issue.record("the fetched reply must be in the first tier")
            return
        }
        #expect(try DNSMessage(decoding: hit).header.id == 4)
    }

    @Test func aSecondTierMissGoesUpstreamOnceForEveryWaitingClient() async throws {
        let upstream = ScriptedUpstreamTransport()
        let cache = TwoTierCache(shared: NIOLockedValueBox([:]))
        let handler = ForwardingQueryHandler(transport: upstream, cache: cache)
        let one = handler.handle(try query("b.test.", id: 5), on: loop)
        #expect(cache.fetches.withLockedValue { $0 } == 1)
        let two = handler.handle(try query("b.test.", id: 6), on: loop)
        #expect(cache.release() == 1)
        let replies = try await [one.get(), two.get()].map { try DNSMessage(decoding: $0!) }
        #expect(replies.map(\.header.id) == [5, 6])
        #expect(upstream.queryCount == 1)
    }
}
