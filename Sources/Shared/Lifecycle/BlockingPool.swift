import Glibc
import Synchronization

/// A thread that runs jobs one at a time, in order: closures (`submit`, `run`) and, as a
/// `SerialExecutor`, the jobs of an actor that does file work (the registry's store). The event loop
/// never waits on the disk itself: it hands the work here and awaits the result.
///
/// @unchecked Sendable: the pthread mutex and condition are allocated once and live as long as the
/// queue; the job list is only touched with the mutex held.
public final class BlockingQueue: SerialExecutor, @unchecked Sendable {
    private enum Job {
        case closure(@Sendable () -> Void)
        case executor(UnownedJob)
    }

    /// For logs and thread names.
    public let name: String
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    /// Jobs in order; a taken one is cleared at once (its closure may hold megabytes of a spool).
    private var jobs: [Job?] = []
    private var head = 0

    public init(name: String) {
        self.name = name
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(condition, nil)
        let context = Unmanaged.passRetained(self).toOpaque()
        var thread = pthread_t()
        let created = pthread_create(&thread, nil, { context in
            let queue = Unmanaged<BlockingQueue>.fromOpaque(context!).takeRetainedValue()
            // Signals are for the handler threads (ProcessSignals), never for workers.
            var all = sigset_t()
            sigfillset(&all)
            pthread_sigmask(SIG_BLOCK, &all, nil)
            queue.work()
            return nil
        }, context)
        precondition(created == 0, "cannot start the \(name) thread")
        pthread_detach(thread)
    }

    /// Runs `job` on this queue's thread after the jobs before it. Never blocks the caller.
    public func submit(_ job: @escaping @Sendable () -> Void) {
        push(.closure(job))
    }

    /// Runs `work` on this queue's thread and returns its result to the awaiting task.
    public func run<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            submit { continuation.resume(with: Result(catching: { try work() })) }
        }
    }

    /// Runs `work` on this queue's thread and returns its result to the awaiting task.
    public func run<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { (continuation: CheckedContinuation<T, Never>) in
            submit { continuation.resume(returning: work()) }
        }
    }

    /// Jobs waiting to run, the running one not counted (for tests and health).
    public var pending: Int {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return jobs.count - head
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        push(.executor(UnownedJob(job)))
    }

    public func asUnownedSerialExecutor() -> UnownedSerialExecutor {
        UnownedSerialExecutor(ordinary: self)
    }

    private func push(_ job: Job) {
        pthread_mutex_lock(mutex)
        jobs.append(job)
        pthread_cond_signal(condition)
        pthread_mutex_unlock(mutex)
    }

    private func work() {
        while true {
            pthread_mutex_lock(mutex)
            while head == jobs.count { pthread_cond_wait(condition, mutex) }
            let job = jobs[head]!
            jobs[head] = nil
            head += 1
            if head == jobs.count {
                jobs.removeAll(keepingCapacity: true)
                head = 0
            } else if head > 64 && head * 2 > jobs.count {
                jobs.removeFirst(head)
                head = 0
            }
            pthread_mutex_unlock(mutex)
            switch job {
            case .closure(let body): body()
            case .executor(let job): job.runSynchronously(on: asUnownedSerialExecutor())
            }
        }
    }
}

/// The small pool of blocking threads every service shares for file work that can take milliseconds
/// (reading logs, spooling uploads, rotating with fsync, reading GGUF headers, writing config and its
/// backups): two threads, so a long job (a discovery scan) leaves the other free. Independent jobs go
/// round-robin; work that must stay in order (one file's writes) uses one queue (`queue(for:)`).
public final class BlockingPool: Sendable {
    /// The process's pool.
    public static let shared = BlockingPool(threads: 2)

    private let queues: [BlockingQueue]
    private let next = Atomic<Int>(0)

    public init(threads: Int) {
        queues = (0..<max(1, threads)).map { BlockingQueue(name: "blocking-\($0)") }
    }

    /// Runs `work` on one of the pool's threads and returns its result to the awaiting task.
    public func run<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await pick().run(work)
    }

    /// Runs `work` on one of the pool's threads and returns its result to the awaiting task.
    public func run<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
        await pick().run(work)
    }

    /// The same queue for the same key, so jobs for one resource keep their order.
    public func queue(for key: String) -> BlockingQueue {
        var hash = 5381
        for byte in key.utf8 { hash = (hash &* 33) &+ Int(byte) }
        return queues[Int(UInt(bitPattern: hash) % UInt(queues.count))]
    }

    private func pick() -> BlockingQueue {
        queues[Int(UInt(bitPattern: next.add(1, ordering: .relaxed).oldValue) % UInt(queues.count))]
    }
}

/// Runs `work` on a thread started for it, which ends when `work` returns, and hands the result to
/// the awaiting task. For long CPU-bound work that must not hold one of the cooperative pool's
/// threads (there are as many as cores: two here): while it runs, the pool stays free for the tasks
/// whose deadlines are real (socket peers, timeouts), and the kernel shares the cores between them.
/// The test suites' exhaustive tables use it; the services' file work uses `BlockingPool`.
public func onThreadOfItsOwn<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { (continuation: CheckedContinuation<T, Never>) in
        let job: @Sendable () -> Void = { continuation.resume(returning: work()) }
        let context = Unmanaged.passRetained(JobBox(job)).toOpaque()
        var thread = pthread_t()
        let created = pthread_create(&thread, nil, { context in
            let box = Unmanaged<JobBox>.fromOpaque(context!).takeRetainedValue()
            var all = sigset_t()
            sigfillset(&all)
            pthread_sigmask(SIG_BLOCK, &all, nil)
            box.job()
            return nil
        }, context)
        precondition(created == 0, "cannot start a thread: \(SystemError("pthread_create", errno: created))")
        pthread_detach(thread)
    }
}

private final class JobBox: Sendable {
    let job: @Sendable () -> Void
    init(_ job: @escaping @Sendable () -> Void) { self.job = job }
}
