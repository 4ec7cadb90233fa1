import Glibc
import Synchronization
import Testing
@testable import Shared

/// The blocking threads file work runs on.
@Suite struct BlockingPoolTests {
    final class Payload: Sendable {
        let bytes = [UInt8](repeating: 7, count: 1 << 20)
    }

    @Test func jobsRunInOrderOffTheCallersThreadAndReturnTheirResult() async throws {
        let queue = BlockingQueue(name: "test-order")
        let order = Mutex<[Int]>([])
        let caller = pthread_self()
        for i in 0..<100 { queue.submit { order.withLock { $0.append(i) } } }
        let ranElsewhere = await queue.run { pthread_equal(pthread_self(), caller) == 0 }
        #expect(ranElsewhere)
        #expect(order.withLock { $0 } == Array(0..<100))
        struct Boom: Error {}
        await #expect(throws: Boom.self) { try await queue.run { () throws -> Int in throw Boom() } }
        #expect(try await BlockingPool.shared.run { () throws -> Int in 42 } == 42)
    }

    @Test func aFinishedJobReleasesWhatItCaptured() async {
        let queue = BlockingQueue(name: "test-release")
        weak var watched: Payload?
        do {
            let payload = Payload()
            watched = payload
            await queue.run { _ = payload.bytes.count }
        }
        // The queue kept the done job (and a megabyte with it) until it compacted its array: no more.
        await queue.run {}
        #expect(watched == nil, "the queue still holds a finished job's closure")
    }

    @Test func aJobRunsAfterEverythingSubmittedBeforeIt() async {
        let queue = BlockingQueue(name: "test-barrier")
        let done = Atomic<Int>(0)
        for _ in 0..<10 { queue.submit { usleep(1000); done.add(1, ordering: .relaxed) } }
        await queue.run {}  // what runner-manager's flushRecords relies on
        #expect(done.load(ordering: .relaxed) == 10)
        #expect(queue.pending == 0)
    }

    @Test func anActorOnAQueueRunsItsJobsThere() async {
        let thread = await OnQueue().threadIsNotTheCallers(pthread_self())
        #expect(thread)
    }
}

actor OnQueue {
    static let queue = BlockingQueue(name: "test-actor")
    nonisolated var unownedExecutor: UnownedSerialExecutor { Self.queue.asUnownedSerialExecutor() }
    func threadIsNotTheCallers(_ caller: pthread_t) -> Bool { pthread_equal(pthread_self(), caller) == 0 }
}
