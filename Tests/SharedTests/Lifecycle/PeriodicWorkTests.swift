import Synchronization
import Testing
@testable import Shared

/// Periodic work ends with its owner.
@Suite struct PeriodicWorkTests {
    @Test func jobsRunEveryIntervalAndStopEndsThemAll() async throws {
        let work = PeriodicWork(loop: .shared)
        let fast = Atomic<Int>(0), slow = Atomic<Int>(0)
        work.every(0.01) { fast.add(1, ordering: .relaxed) }
        work.every(interval: { 0.05 }) { slow.add(1, ordering: .relaxed) }
        #expect(work.count == 2)
        // Until both have repeated (5 s at most: a loaded CI machine can stall the loop for a while).
        let until = deadline(after: 5)
        while (fast.load(ordering: .relaxed) < 5 || slow.load(ordering: .relaxed) < 2) && monotonicNanos() < until {
            try await EventLoop.shared.sleep(seconds: 0.01)
        }
        await work.stop()
        let f = fast.load(ordering: .relaxed)
        let s = slow.load(ordering: .relaxed)
        #expect(f >= 5 && s >= 2, "fast \(f), slow \(s)")
        #expect(work.count == 0)
        try await EventLoop.shared.sleep(seconds: 0.1)
        let (f2, s2) = (fast.load(ordering: .relaxed), slow.load(ordering: .relaxed))
        #expect(f2 == f && s2 == s, "nothing runs after stop")
    }

    @Test func stopWaitsForARunningJobAndLaterJobsNeverStart() async throws {
        let work = PeriodicWork(loop: .shared)
        let inside = Atomic<Bool>(false), finished = Atomic<Bool>(false)
        work.every(0.01) {
            inside.store(true, ordering: .relaxed)
            // An unstructured task: the job's own cancellation does not cut this wait short.
            await Task { try? await EventLoop.shared.sleep(seconds: 0.1) }.value
            finished.store(true, ordering: .relaxed)
        }
        while !inside.load(ordering: .relaxed) { try await EventLoop.shared.sleep(seconds: 0.005) }
        await work.stop()
        let done = finished.load(ordering: .relaxed)
        #expect(done, "stop returned while a job was still running")
        let late = Atomic<Int>(0)
        work.every(0.01) { late.add(1, ordering: .relaxed) }
        try await EventLoop.shared.sleep(seconds: 0.05)
        let lateRuns = late.load(ordering: .relaxed)
        #expect(lateRuns == 0 && work.count == 0)
    }
}
