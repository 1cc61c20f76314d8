import ArgumentParser
import Foundation
import NIOConcurrencyHelpers
import Testing

@testable import dotproxy

@Suite struct BlockingCommandRunnerTests {
    struct Finished: Error, Equatable { let code: Int }

    struct RecordingCommand: AsyncParsableCommand {
        static let ran = NIOLockedValueBox(0)
        @Option var failWith: Int?

        func run() async throws {
            await Task.yield()
            Self.ran.withLockedValue { $0 += 1 }
            if let failWith { throw Finished(code: failWith) }
        }
    }

    /// Runs the runner on a thread of its own, as `main` does, so that no test-pool thread blocks.
    private func runOnOwnThread(_ arguments: [String]) async -> Result<Void, any Error> {
        await withCheckedContinuation { continuation in
            let command = try! RecordingCommand.parse(arguments)
            Thread {
                continuation.resume(returning: Result { try BlockingCommandRunner.run(command) })
            }.start()
        }
    }

    @Test func runsTheCommandToTheEndAndRethrowsItsError() async throws {
        let before = RecordingCommand.ran.withLockedValue { $0 }
        let success = await runOnOwnThread([])
        #expect(throws: Never.self) { try success.get() }
        #expect(RecordingCommand.ran.withLockedValue { $0 } == before + 1)

        let failure = await runOnOwnThread(["--fail-with", "7"])
        #expect(throws: Finished(code: 7)) { try failure.get() }
        #expect(RecordingCommand.ran.withLockedValue { $0 } == before + 2)
    }
}
