import Testing

@testable import DotProxyServer

/// The default number of event loops, and the check against a task limit.
@Suite struct ThreadPlanTests {
    @Test func oneLoopPerFourCoresAtLeastOneAtMostSixteen() {
        #expect(
            [1, 2, 3, 4, 7, 8, 16, 64, 256].map { ThreadPlan(threads: nil, cores: $0).eventLoops } == [
                1, 1, 1, 1, 1, 2, 4, 16, 16,
            ]
        )
        #expect(ThreadPlan(threads: 3, cores: 2).eventLoops == 3)
    }

    @Test func aPlanThatDoesNotFitTheTaskLimitSaysWhatToChange() throws {
        #expect(
            ThreadPlan(threads: nil, cores: 256).problem(taskLimit: 64, running: 1) == nil,
            "the default fits the shipped unit's TasksMax"
        )
        let many = try #require(ThreadPlan(threads: 60, cores: 2).problem(taskLimit: 64, running: 4))
        #expect(many.contains("60 event loops") && many.contains("--threads 51"))
        let tiny = try #require(ThreadPlan(threads: nil, cores: 2).problem(taskLimit: 8, running: 4))
        #expect(tiny.contains("1 event loop needs") && tiny.contains("at least 15"))
    }
}
