import ArgumentParser
import Dispatch

/// Runs an async command from a synchronous `main`, blocking the main thread until it finishes.
///
/// Swift's own async `main` hands the main thread to `dispatch_main()`, which ends it with
/// `pthread_exit`. That unwinds the main thread's stack through the unwind tables, once, at start-up:
/// it maps about 0.6 MiB of the binary's `.eh_frame_hdr` and `.eh_frame` and part of libgcc_s, which
/// then stay resident for nothing (idle RSS 16.3 → 15.4 MiB, Docs/performance.md). Here the command
/// runs as a detached task on the global executor while the main thread waits; nothing in the proxy
/// needs the main actor.
enum BlockingCommandRunner {
    /// The command and its outcome, handed between the task and the waiting main thread. The
    /// semaphore orders the accesses: the task writes before it signals, the main thread reads after.
    private final class Run: @unchecked Sendable {
        var command: any AsyncParsableCommand
        var outcome: Result<Void, any Error> = .success(())
        init(_ command: any AsyncParsableCommand) { self.command = command }
    }

    /// Runs `command` to completion and rethrows what it throws.
    static func run(_ command: any AsyncParsableCommand) throws {
        let run = Run(command)
        let finished = DispatchSemaphore(value: 0)
        Task.detached {
            do {
                try await run.command.run()
            } catch {
                run.outcome = .failure(error)
            }
            finished.signal()
        }
        finished.wait()
        try run.outcome.get()
    }
}
