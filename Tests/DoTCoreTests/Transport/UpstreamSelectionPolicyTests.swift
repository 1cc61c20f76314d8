import DoTCore
import NIOCore
import Testing

/// Each policy's choice on scripted statistics.
struct UpstreamSelectionPolicyTests {
    static func candidates(
        _ stats: [(outstanding: Int, latencyMilliseconds: Int64?)],
        indices: [Int]? = nil
    ) -> [UpstreamCandidate] {
        stats.enumerated().map { position, stat in
            UpstreamCandidate(
                index: indices?[position] ?? position,
                outstanding: stat.outstanding,
                latency: stat.latencyMilliseconds.map { .milliseconds($0) }
            )
        }
    }

    @Test func leastOutstandingPicksFewestInFlightThenLowestLatencyThenOrder() {
        var policy: any UpstreamSelectionPolicy = .leastOutstanding
        #expect(policy.select(from: Self.candidates([(5, 10), (2, 50), (3, 1)])) == 1)
        // A tie on outstanding goes to the lower latency.
        #expect(policy.select(from: Self.candidates([(2, 30), (2, 10), (4, 1)])) == 1)
        // An unmeasured upstream counts as fastest, so it gets tried.
        #expect(policy.select(from: Self.candidates([(0, 5), (0, nil)])) == 1)
        // A full tie goes to configured order.
        #expect(policy.select(from: Self.candidates([(1, 10), (1, 10)])) == 0)
    }

    @Test func roundRobinRotatesAndSkipsUpstreamsThatAreNotCandidates() {
        var policy = RoundRobinSelectionPolicy()
        let all = Self.candidates([(0, nil), (0, nil), (0, nil)])
        #expect((0..<4).map { _ in all[policy.select(from: all)].index } == [0, 1, 2, 0])
        // Upstream 2 is down: after 1 comes 0 again.
        let withoutTwo = Self.candidates([(0, nil), (0, nil)], indices: [0, 1])
        #expect((0..<3).map { _ in withoutTwo[policy.select(from: withoutTwo)].index } == [1, 0, 1])
    }

    @Test func sequentialAlwaysTakesTheFirstUsable() {
        var policy = SequentialSelectionPolicy()
        #expect(policy.select(from: Self.candidates([(100, 900), (0, 1)])) == 0)
        let laterOnly = Self.candidates([(0, nil)], indices: [2])
        #expect(laterOnly[policy.select(from: laterOnly)].index == 2)
    }

    @Test func randomSpreadsOverEveryCandidateAndFollowsItsGenerator() {
        var policy = RandomSelectionPolicy(generator: SplitMix64(seed: 42))
        var again = RandomSelectionPolicy(generator: SplitMix64(seed: 42))
        let all = Self.candidates([(0, nil), (0, nil), (0, nil)])
        var counts = [0, 0, 0]
        for _ in 0..<3_000 {
            let choice = policy.select(from: all)
            #expect(choice == again.select(from: all))
            counts[choice] += 1
        }
        #expect(counts.allSatisfy { (800...1_200).contains($0) }, "\(counts)")
        var system: any UpstreamSelectionPolicy = .random
        #expect(all.indices.contains(system.select(from: all)))
    }

    @Test func fastestMeasuresEachFirstThenPicksLowestLatencyAndExploresOnSchedule() {
        var policy = FastestSelectionPolicy(explorationInterval: 4)
        #expect(policy.explorationInterval == 4)
        #expect(policy.select(from: Self.candidates([(0, 20), (0, nil), (0, 5)])) == 1)
        let measured = Self.candidates([(9, 20), (0, 40), (0, 5)])
        // Three picks of the fastest (2), then one exploration of another, in rotation.
        #expect((0..<8).map { _ in policy.select(from: measured) } == [2, 2, 2, 0, 2, 2, 2, 1])
        #expect(FastestSelectionPolicy(explorationInterval: 0).explorationInterval == 2)
        var single = FastestSelectionPolicy(explorationInterval: 2)
        #expect((0..<4).map { _ in single.select(from: Self.candidates([(0, 3)])) } == [0, 0, 0, 0])
    }
}
