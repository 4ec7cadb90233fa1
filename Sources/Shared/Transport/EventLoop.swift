import Glibc
import Synchronization

/// Errors of waiting on the event loop.
public enum EventLoopError: Error, Sendable, Equatable {
    /// The deadline passed before the descriptor became ready.
    case timedOut
    /// The descriptor was closed or invalid while a task waited on it.
    case badDescriptor
}

/// An edge-triggered `epoll(7)` reactor on its own thread that is also the `TaskExecutor` of the
/// tasks it serves.
///
/// Why this shape (measured on these machines): connection tasks that run *on the loop thread* resume
/// without a context switch when their socket becomes ready, which served ~145k requests/s against
/// ~65k for a `DispatchSource` per connection with tasks on the cooperative pool. Tasks created with
/// `Task(executorPreference: loop)` run here, and so do the default actors they call.
///
/// Descriptors are registered once, edge-triggered, when their owner is created (`adopt`), and leave
/// when their owner closes them (`close`): no system call per wait. An edge that arrives while no task
/// waits is kept as a readiness flag, so the next wait returns at once; a waiter therefore may only
/// wait after a read or write that found the descriptor drained (`EAGAIN`, or for reads a short read),
/// which is how `Connection`, `Listener` and `ProcessSignals` are written. Each registration carries a
/// generation in its event data, so an event for a closed descriptor whose number was reused is
/// recognised and dropped rather than delivered to the new one.
///
/// Every wait has an optional deadline checked by the loop itself (no timer task), and is cancellable.
public final class EventLoop: TaskExecutor, @unchecked Sendable {
    // @unchecked Sendable: all mutable state is inside `state` (a Mutex) or owned by the loop thread
    // (`run`'s locals); `epoll` is only read after init, and the epoll calls are thread-safe.

    /// Which readiness a task waits for.
    public enum Interest: Sendable { case read, write }

    private struct Timer {
        var id: UInt64
        var deadline: UInt64
        var action: @Sendable () -> Void
    }

    private struct State {
        var jobs: [UnownedJob] = []
        /// The loop is in (or about to enter) `epoll_wait` with `wakeAt` as its deadline.
        var sleeping = false
        var wakeAt = UInt64.max
        var slots = DescriptorTable()
        /// No waiter's deadline is earlier (a lower bound: waiters that left keep it low until the
        /// next `expire`, which recomputes it). Spares the loop a scan of every slot on each turn.
        var earliestDeadline = UInt64.max
        var timers: [Timer] = []
        var nextID: UInt64 = 1
        var nextGeneration: UInt32 = 1
        var counts = Counts()
    }

    /// What the loop has done since it started: the hops a request costs, counted.
    public struct Counts: Sendable, Equatable {
        /// Turns of the loop (`epoll_wait` calls).
        public var turns: UInt64 = 0
        /// Jobs run: task starts and resumptions, each a hop onto the loop.
        public var jobs: UInt64 = 0
        /// Waits that suspended their task, and waits answered at once from a recorded edge.
        public var suspendedWaits: UInt64 = 0
        public var immediateWaits: UInt64 = 0
    }

    /// The counts so far.
    public var counts: Counts { state.withLock { $0.counts } }

    private let state = Mutex(State())
    private let thread = Atomic<UInt>(0)
    private let epoll = Epoll()
    private let wakeRead: Int32
    private let wakeWrite: Int32
    private let name: String
    /// How long the loop polls without blocking after a turn with work before it sleeps.
    static let spinNanos: UInt64 = 50_000
    /// Event data of the wake-up socket (generation 0 is never a descriptor's).
    private static let wakeToken = UInt64.max

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
        // Level-triggered: the loop drains it whenever it is reported.
        let added = epoll.control(.add, wakeRead, events: Epoll.readable, data: Self.wakeToken)
        precondition(added == 0, "epoll_ctl for the event loop's wake-up failed: \(SystemError("epoll_ctl", errno: added))")
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

    // MARK: Descriptors

    /// Registers a descriptor its owner has just opened (accepted, connected, created): from now on
    /// its readiness edges are recorded. A slot still held under the same number belonged to a
    /// descriptor closed without `close(_:)`; it is replaced, and a task still waiting there (it can
    /// never be woken rightly) fails with `badDescriptor`.
    public func adopt(_ fd: Int32) {
        let (generation, stale) = state.withLock { s -> (UInt32, [DescriptorWaiter]) in
            let generation = s.nextGeneration
            s.nextGeneration = s.nextGeneration == UInt32.max ? 1 : s.nextGeneration + 1
            let old = s.slots.insert(DescriptorSlot(generation: generation), at: fd)
            return (generation, [old?.reader, old?.writer].compactMap { $0 })
        }
        for w in stale { w.continuation.resume(throwing: EventLoopError.badDescriptor) }
        let flags = Epoll.readable | Epoll.writable | Epoll.readHangUp | Epoll.edgeTriggered
        let data = UInt64(generation) << 32 | UInt64(UInt32(bitPattern: fd))
        var rc = epoll.control(.add, fd, events: flags, data: data)
        if rc == EEXIST { rc = epoll.control(.modify, fd, events: flags, data: data) }
        precondition(rc == 0 || rc == EBADF, "epoll_ctl(ADD) of descriptor \(fd) failed: \(SystemError("epoll_ctl", errno: rc))")
    }

    /// Closes an adopted descriptor: it leaves the loop first (a task waiting on it fails with
    /// `badDescriptor`), so its number can be reused at once.
    public func close(_ fd: Int32) {
        let waiters = state.withLock { s -> [DescriptorWaiter] in
            guard let old = s.slots.remove(fd) else { return [] }
            return [old.reader, old.writer].compactMap { $0 }
        }
        // Removed explicitly: a copy of the descriptor in a child being spawned would otherwise keep
        // the registration, and its events, alive.
        _ = epoll.control(.remove, fd, events: 0, data: 0)
        Glibc.close(fd)
        for w in waiters { w.continuation.resume(throwing: EventLoopError.badDescriptor) }
    }

    // MARK: Waiting

    /// Suspends until `fd` (adopted) is ready for `interest`, the deadline passes
    /// (`EventLoopError.timedOut`), the task is cancelled (`CancellationError`) or the descriptor is
    /// closed (`EventLoopError.badDescriptor`). Returns at once when an edge arrived since the last
    /// wait. Only one task may wait per descriptor and interest: a second is a programming error.
    public func wait(_ fd: Int32, for interest: Interest, deadline: UInt64 = 0) async throws {
        // Readiness already recorded: no suspension. Otherwise an id for this wait.
        let taken = state.withLock { s -> UInt64? in
            let ready = s.slots.update(fd) { slot -> Bool in
                switch interest {
                case .read: defer { slot.readable = false }; return slot.readable
                case .write: defer { slot.writable = false }; return slot.writable
                }
            }
            guard let ready else { return nil }
            if ready { s.counts.immediateWaits &+= 1; return 0 }
            s.nextID &+= 1
            return s.nextID
        }
        guard let id = taken else { throw EventLoopError.badDescriptor }
        if id == 0 { return }
        try await withTaskCancellationHandler {
            try await withUnsafeThrowingContinuation { (continuation: UnsafeContinuation<Void, any Error>) in
                enum Outcome { case waiting(wake: Bool), ready, closed }
                let outcome = state.withLock { s -> Outcome in
                    let waiter = DescriptorWaiter(id: id, continuation: continuation, deadline: deadline)
                    let registered = s.slots.update(fd) { slot -> Bool in
                        switch interest {
                        case .read:
                            if slot.readable { slot.readable = false; return false }
                            precondition(slot.reader == nil, "two tasks wait to read descriptor \(fd)")
                            slot.reader = waiter
                        case .write:
                            if slot.writable { slot.writable = false; return false }
                            precondition(slot.writer == nil, "two tasks wait to write descriptor \(fd)")
                            slot.writer = waiter
                        }
                        return true
                    }
                    guard let registered else { return .closed }
                    guard registered else { s.counts.immediateWaits &+= 1; return .ready }
                    s.counts.suspendedWaits &+= 1
                    if deadline != 0 && deadline < s.earliestDeadline { s.earliestDeadline = deadline }
                    // The loop needs waking only when it sleeps past this waiter's deadline.
                    guard s.sleeping, deadline != 0, deadline < s.wakeAt else { return .waiting(wake: false) }
                    s.sleeping = false
                    return .waiting(wake: true)
                }
                switch outcome {
                case .ready: continuation.resume()
                case .closed: continuation.resume(throwing: EventLoopError.badDescriptor)
                case .waiting(let wake):
                    if wake { signalWake() }
                    // A cancellation that happened before registration found nothing to cancel.
                    if Task.isCancelled { cancelWait(fd, interest: interest, id: id) }
                }
            }
        } onCancel: {
            cancelWait(fd, interest: interest, id: id)
        }
    }

    private func cancelWait(_ fd: Int32, interest: Interest, id: UInt64) {
        let waiter = state.withLock { s -> DescriptorWaiter? in
            s.slots.update(fd) { slot -> DescriptorWaiter? in
                switch interest {
                case .read:
                    guard let w = slot.reader, w.id == id else { return nil }
                    slot.reader = nil
                    return w
                case .write:
                    guard let w = slot.writer, w.id == id else { return nil }
                    slot.writer = nil
                    return w
                }
            } ?? nil
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
            guard s.sleeping, deadline < s.wakeAt else { return (s.nextID, false) }
            s.sleeping = false
            return (s.nextID, true)
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
        var ready: [(UnsafeContinuation<Void, any Error>, (any Error)?)] = []
        var dueTimers: [@Sendable () -> Void] = []
        let executor = asUnownedTaskExecutor()
        let readEdge = Epoll.readable | Epoll.readHangUp | Epoll.hangUp | Epoll.error
        let writeEdge = Epoll.writable | Epoll.hangUp | Epoll.error

        while true {
            // 1. Run every job that is queued, and the jobs those enqueue, up to a bound so I/O is not starved.
            var rounds = 0
            var jobsRun = 0
            while rounds < 16 {
                state.withLock { s in swap(&batch, &s.jobs) }
                if batch.isEmpty { break }
                jobsRun += batch.count
                for job in batch { job.runSynchronously(on: executor) }
                batch.removeAll(keepingCapacity: true)
                rounds += 1
            }

            // 2. The nearest deadline; sleep only when no job is pending.
            let now = monotonicNanos()
            let timeout = state.withLock { s -> Int32 in
                var nearest = s.earliestDeadline
                for t in s.timers { nearest = min(nearest, t.deadline) }
                if !s.jobs.isEmpty || nearest <= now { return 0 }
                s.sleeping = true
                s.wakeAt = nearest
                if nearest == UInt64.max { return -1 }
                // Round up so a wake-up never lands just before the deadline.
                return Int32(min((nearest - now + 999_999) / 1_000_000, 60_000))
            }

            // After a turn that ran jobs, poll without blocking for a moment first: a request/response
            // peer usually answers within tens of microseconds, and being woken from a blocking
            // epoll_wait costs more than that.
            var n = 0
            if timeout != 0 && jobsRun > 0 {
                let until = monotonicNanos() &+ Self.spinNanos
                repeat { n = epoll.wait(timeoutMilliseconds: 0) } while n == 0 && monotonicNanos() < until
            }
            if n == 0 { n = epoll.wait(timeoutMilliseconds: timeout) }
            if n < 0 && errno != EINTR {
                // epoll_wait only fails on EBADF/EFAULT/EINVAL; back off rather than spin.
                usleep(1000)
            }

            // 3. Record the edges, resume the waiters they are for and those whose deadlines passed.
            let after = monotonicNanos()
            var woken = false
            state.withLock { s in
                s.sleeping = false
                s.wakeAt = UInt64.max
                s.counts.turns &+= 1
                s.counts.jobs &+= UInt64(jobsRun)
                for i in 0..<max(n, 0) {
                    let (flags, data) = epoll.event(i)
                    if data == Self.wakeToken { woken = true; continue }
                    let fd = Int32(bitPattern: UInt32(truncatingIfNeeded: data))
                    // An event for a descriptor closed (and its number perhaps reused) since: dropped.
                    let generation = UInt32(truncatingIfNeeded: data >> 32)
                    _ = s.slots.update(fd) { slot in
                        // An event for a descriptor closed (and its number perhaps reused) since: dropped.
                        guard slot.generation == generation else { return }
                        if flags & readEdge != 0 {
                            if let w = slot.reader { ready.append((w.continuation, nil)); slot.reader = nil } else { slot.readable = true }
                        }
                        if flags & writeEdge != 0 {
                            if let w = slot.writer { ready.append((w.continuation, nil)); slot.writer = nil } else { slot.writable = true }
                        }
                    }
                }
                if after >= s.earliestDeadline { s.earliestDeadline = s.slots.expire(at: after, into: &ready) }
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
            if woken { drainWake() }
            for (continuation, error) in ready {
                if let error { continuation.resume(throwing: error) } else { continuation.resume() }
            }
            ready.removeAll(keepingCapacity: true)
            for action in dueTimers { action() }
            dueTimers.removeAll(keepingCapacity: true)
        }
    }
}
