import Glibc
import Synchronization

/// Errors of waiting on the event loop.
public enum EventLoopError: Error, Sendable, Equatable {
    /// The deadline passed before the descriptor became ready.
    case timedOut
    /// The descriptor was closed or invalid while a task waited on it.
    case badDescriptor
}

/// A `poll(2)` reactor on its own thread that is also the `TaskExecutor` of the tasks it serves.
///
/// Why this shape (measured on these machines): connection tasks that run *on the poll thread* resume
/// without a context switch when their socket becomes ready, which served ~145k requests/s against
/// ~65k for a `DispatchSource` per connection with tasks on the cooperative pool. Only descriptors
/// with a task waiting are polled. Tasks created with `Task(executorPreference: loop)` run here,
/// and so do the default actors they call.
///
/// Every wait has an optional deadline checked by the loop itself, so timeouts cost no timer task.
/// Waits are cancellable: task cancellation resumes the waiter with `CancellationError`.
public final class EventLoop: TaskExecutor, @unchecked Sendable {
    // @unchecked Sendable: all mutable state is inside `state` (a Mutex) or owned by the loop thread.

    /// Which readiness a task waits for.
    public enum Interest: Sendable { case read, write }

    private struct Waiter {
        var id: UInt64
        var continuation: CheckedContinuation<Void, any Error>
        var deadline: UInt64  // 0 = none
    }

    private struct Timer {
        var id: UInt64
        var deadline: UInt64
        var action: @Sendable () -> Void
    }

    private struct State {
        var jobs: [UnownedJob] = []
        var sleeping = false
        var readers: [Int32: Waiter] = [:]
        var writers: [Int32: Waiter] = [:]
        var timers: [Timer] = []
        var nextID: UInt64 = 1
    }

    private let state = Mutex(State())
    private let thread = Atomic<UInt>(0)
    private let wakeRead: Int32
    private let wakeWrite: Int32
    private let name: String

    /// The process's shared loop. One loop thread per process fits these 2-core machines: the other
    /// core stays free for the peer (a runner, or the benchmark client).
    public static let shared = EventLoop(name: "event-loop")

    /// Starts a loop thread.
    public init(name: String) {
        var pair: [Int32] = [-1, -1]
        let rc = socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0, &pair)
        precondition(rc == 0, "socketpair for the event loop's wake-up failed: \(SystemError("socketpair"))")
        wakeRead = pair[0]
        wakeWrite = pair[1]
        self.name = name
        var thread = pthread_t()
        let context = Unmanaged.passRetained(self).toOpaque()
        let created = pthread_create(&thread, nil, { context in
            let loop = Unmanaged<EventLoop>.fromOpaque(context!).takeRetainedValue()
            loop.run()
            return nil
        }, context)
        precondition(created == 0, "pthread_create failed for the event loop")
        pthread_detach(thread)
    }

    // MARK: TaskExecutor

    public func enqueue(_ job: consuming ExecutorJob) {
        let unowned = UnownedJob(job)
        let wake = state.withLock { s -> Bool in
            s.jobs.append(unowned)
            let wasSleeping = s.sleeping
            s.sleeping = false
            return wasSleeping
        }
        if wake { signalWake() }
    }

    public func asUnownedTaskExecutor() -> UnownedTaskExecutor {
        UnownedTaskExecutor(ordinary: self)
    }

    // MARK: Waiting

    /// Suspends until `fd` is ready for `interest`, the deadline passes (`EventLoopError.timedOut`),
    /// or the task is cancelled (`CancellationError`). Only one task may wait per descriptor and interest.
    public func wait(_ fd: Int32, for interest: Interest, deadline: UInt64 = 0) async throws {
        let id = state.withLock { s -> UInt64 in
            s.nextID &+= 1
            return s.nextID
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let waiter = Waiter(id: id, continuation: continuation, deadline: deadline)
                let (wake, displaced) = state.withLock { s -> (Bool, Waiter?) in
                    // One waiter per descriptor and direction. One already in the slot waits on a number
                    // that was closed and is now another socket's (poll would answer it POLLNVAL only if
                    // it looked before the reuse): it can never be woken rightly, so it fails with
                    // `badDescriptor` rather than being overwritten and left to hang forever.
                    let displaced: Waiter?
                    switch interest {
                    case .read: displaced = s.readers.updateValue(waiter, forKey: fd)
                    case .write: displaced = s.writers.updateValue(waiter, forKey: fd)
                    }
                    let wasSleeping = s.sleeping
                    s.sleeping = false
                    return (wasSleeping, displaced)
                }
                displaced?.continuation.resume(throwing: EventLoopError.badDescriptor)
                if wake { signalWake() }
                // A cancellation that happened before registration found nothing to cancel.
                if Task.isCancelled { cancelWait(fd, interest: interest, id: id) }
            }
        } onCancel: {
            cancelWait(fd, interest: interest, id: id)
        }
    }

    private func cancelWait(_ fd: Int32, interest: Interest, id: UInt64) {
        let waiter = state.withLock { s -> Waiter? in
            switch interest {
            case .read:
                guard let w = s.readers[fd], w.id == id else { return nil }
                s.readers[fd] = nil
                return w
            case .write:
                guard let w = s.writers[fd], w.id == id else { return nil }
                s.writers[fd] = nil
                return w
            }
        }
        waiter?.continuation.resume(throwing: CancellationError())
    }

    /// Suspends the task until the monotonic deadline (nanoseconds); cancellable.
    public func sleep(until deadline: UInt64) async throws {
        let box = Mutex<CheckedContinuation<Void, any Error>?>(nil)
        var timerID: UInt64 = 0
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                box.withLock { $0 = continuation }
                timerID = schedule(at: deadline) {
                    box.withLock { $0.take() }?.resume()
                }
                if Task.isCancelled { box.withLock { $0.take() }?.resume(throwing: CancellationError()) }
            }
        } onCancel: {
            box.withLock { $0.take() }?.resume(throwing: CancellationError())
        }
        cancelTimer(timerID)
    }

    /// Suspends the task for `seconds`; cancellable.
    public func sleep(seconds: Double) async throws {
        try await sleep(until: Shared.deadline(after: seconds))
    }

    /// Runs `action` on the loop thread at the monotonic deadline. Returns an id for `cancelTimer`.
    /// The action must be short and must not block: it runs between polls.
    @discardableResult
    public func schedule(at deadline: UInt64, _ action: @escaping @Sendable () -> Void) -> UInt64 {
        let (id, wake) = state.withLock { s -> (UInt64, Bool) in
            s.nextID &+= 1
            s.timers.append(Timer(id: s.nextID, deadline: deadline, action: action))
            let wasSleeping = s.sleeping
            s.sleeping = false
            return (s.nextID, wasSleeping)
        }
        if wake { signalWake() }
        return id
    }

    /// Cancels a timer that has not fired yet; a no-op otherwise.
    public func cancelTimer(_ id: UInt64) {
        state.withLock { s in
            if let i = s.timers.firstIndex(where: { $0.id == id }) { s.timers.remove(at: i) }
        }
    }

    // MARK: The loop

    private func signalWake() {
        var byte: UInt8 = 1
        _ = Glibc.write(wakeWrite, &byte, 1)
    }

    private func drainWake() {
        var sink = [UInt8](repeating: 0, count: 64)
        while Glibc.read(wakeRead, &sink, 64) > 0 {}
    }

    /// Checks (in debug builds) that the caller runs on this loop's thread: what loop-bound state (a
    /// connection's descriptor, the reactor's tables) relies on.
    public func assertInLoop(_ what: @autoclosure () -> String = "loop-bound state", file: StaticString = #fileID, line: UInt = #line) {
        assert(inLoop, "\(what()) used off the event loop thread", file: file, line: line)
    }

    /// Whether the caller runs on this loop's thread (where its sockets may be used directly).
    public var inLoop: Bool { thread.load(ordering: .relaxed) == UInt(bitPattern: Int(bitPattern: pthread_self())) }

    private func run() {
        thread.store(UInt(bitPattern: Int(bitPattern: pthread_self())), ordering: .relaxed)
        // The loop thread never takes process signals: `ProcessSignals` handlers run on other threads.
        var all = sigset_t()
        sigfillset(&all)
        pthread_sigmask(SIG_BLOCK, &all, nil)

        var batch: [UnownedJob] = []
        batch.reserveCapacity(256)
        var fds: [pollfd] = []
        fds.reserveCapacity(256)
        var ready: [(CheckedContinuation<Void, any Error>, (any Error)?)] = []
        var dueTimers: [@Sendable () -> Void] = []
        let executor = asUnownedTaskExecutor()

        while true {
            // 1. Run every job that is queued, and the jobs those enqueue, up to a bound so I/O is not starved.
            var rounds = 0
            while rounds < 16 {
                state.withLock { s in swap(&batch, &s.jobs) }
                if batch.isEmpty { break }
                for job in batch { job.runSynchronously(on: executor) }
                batch.removeAll(keepingCapacity: true)
                rounds += 1
            }

            // 2. Collect what to poll and the nearest deadline; sleep only when no job is pending.
            fds.removeAll(keepingCapacity: true)
            fds.append(pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0))
            let now = monotonicNanos()
            let timeout: Int32 = state.withLock { s -> Int32 in
                var nearest = UInt64.max
                for (fd, w) in s.readers {
                    fds.append(pollfd(fd: fd, events: Int16(POLLIN), revents: 0))
                    if w.deadline != 0 { nearest = min(nearest, w.deadline) }
                }
                for (fd, w) in s.writers {
                    fds.append(pollfd(fd: fd, events: Int16(POLLOUT), revents: 0))
                    if w.deadline != 0 { nearest = min(nearest, w.deadline) }
                }
                for t in s.timers { nearest = min(nearest, t.deadline) }
                if !s.jobs.isEmpty { return 0 }
                s.sleeping = true
                if nearest == UInt64.max { return -1 }
                if nearest <= now { return 0 }
                // Round up so a wake-up never lands just before the deadline.
                return Int32(min((nearest - now + 999_999) / 1_000_000, 60_000))
            }

            let n = poll(&fds, nfds_t(fds.count), timeout)
            if n < 0 && errno != EINTR {
                // poll only fails on EFAULT/EINVAL/ENOMEM; back off rather than spin.
                usleep(1000)
            }

            // 3. Resume the waiters whose descriptors are ready or whose deadlines passed.
            let after = monotonicNanos()
            state.withLock { s in
                s.sleeping = false
                if n > 0 {
                    for p in fds.dropFirst() where p.revents != 0 {
                        let invalid = (p.revents & Int16(POLLNVAL)) != 0
                        let error: (any Error)? = invalid ? EventLoopError.badDescriptor : nil
                        if (p.events & Int16(POLLIN)) != 0, let w = s.readers.removeValue(forKey: p.fd) {
                            ready.append((w.continuation, error))
                        } else if (p.events & Int16(POLLOUT)) != 0, let w = s.writers.removeValue(forKey: p.fd) {
                            ready.append((w.continuation, error))
                        }
                    }
                }
                for (fd, w) in s.readers where w.deadline != 0 && w.deadline <= after {
                    s.readers[fd] = nil
                    ready.append((w.continuation, EventLoopError.timedOut))
                }
                for (fd, w) in s.writers where w.deadline != 0 && w.deadline <= after {
                    s.writers[fd] = nil
                    ready.append((w.continuation, EventLoopError.timedOut))
                }
                if !s.timers.isEmpty {
                    var i = 0
                    while i < s.timers.count {
                        if s.timers[i].deadline <= after {
                            dueTimers.append(s.timers[i].action)
                            s.timers.swapAt(i, s.timers.count - 1)
                            s.timers.removeLast()
                        } else {
                            i += 1
                        }
                    }
                }
            }
            if n > 0 && fds[0].revents != 0 { drainWake() }
            for (continuation, error) in ready {
                if let error { continuation.resume(throwing: error) } else { continuation.resume() }
            }
            ready.removeAll(keepingCapacity: true)
            for action in dueTimers { action() }
            dueTimers.removeAll(keepingCapacity: true)
        }
    }
}
