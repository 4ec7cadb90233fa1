import Testing
@testable import RunnerManager

/// The scheduler as a pure state machine: events in, actions out, no processes.
@Suite struct SchedulerTests {
    static let gb = 1 << 30
    static func spec(_ id: String, gb: Int = 1, concurrency: Int = 4, ttl: Double = 300, fingerprint: String = "f") -> ModelSpec {
        ModelSpec(id: id, fingerprint: fingerprint, memoryBytes: gb * Self.gb, concurrency: concurrency, ttlSeconds: ttl)
    }

    func scheduler(maxLoaded: Int = 2, budgetGB: Int = 8, queue: Int = 8) -> Scheduler {
        Scheduler(config: .init(maxLoaded: maxLoaded, budgetBytes: budgetGB * Self.gb, queueLimit: queue))
    }

    func grants(_ actions: [SchedulerAction]) -> [RequestID] {
        actions.compactMap { if case .grant(let r, _, _) = $0 { r } else { nil } }
    }

    func lease(_ actions: [SchedulerAction], for request: RequestID) -> LeaseID? {
        for a in actions { if case .grant(let r, _, let l) = a, r == request { return l } }
        return nil
    }

    @Test func concurrentAcquiresJoinOneLoadAndAReadyModelIsGrantedAtOnce() {
        var s = scheduler(queue: 64)
        let a = Self.spec("a")
        #expect(s.acquire(1, spec: a, keepAlive: nil, now: 0) == [.start(a)])
        for r in 2...20 { #expect(s.acquire(RequestID(r), spec: a, keepAlive: nil, now: 0).isEmpty, "joins the load in flight") }
        let ready = s.started("a", now: 1)
        #expect(grants(ready) == [1, 2, 3, 4], "up to the concurrency of 4, in arrival order")
        // A release lets the next waiter in, in order.
        #expect(grants(s.release(lease(ready, for: 1)!, now: 2)) == [5])
        // An idle ready model is granted at once.
        var t = scheduler()
        _ = t.acquire(1, spec: a, keepAlive: nil, now: 0)
        let l = lease(t.started("a", now: 1), for: 1)!
        _ = t.release(l, now: 2)
        #expect(grants(t.acquire(2, spec: a, keepAlive: nil, now: 3)) == [2])
    }

    @Test func aBusyRunnerIsNeverEvictedTheRequestWaitsThenTheSwapHappens() {
        var s = scheduler(maxLoaded: 1)
        let a = Self.spec("a"), b = Self.spec("b")
        _ = s.acquire(1, spec: a, keepAlive: nil, now: 0)
        let la = lease(s.started("a", now: 1), for: 1)!
        // b needs the only slot; a is busy: nothing is stopped, b waits.
        #expect(s.acquire(2, spec: b, keepAlive: nil, now: 2).isEmpty)
        #expect(s.runners["a"]?.phase == .ready)
        // a's lease ends: a is evicted, then b starts once a has stopped.
        #expect(s.release(la, now: 3) == [.stop(model: "a", reason: .evicted)])
        #expect(s.exited("a", reason: "stopped", now: 4) == [.start(b)])
        #expect(grants(s.started("b", now: 5)) == [2])
    }

    @Test func memoryBudgetEvictsLeastRecentlyUsedIdleRunnersFirst() {
        var s = scheduler(maxLoaded: 5, budgetGB: 6)
        for (i, id) in ["a", "b", "c"].enumerated() {
            _ = s.acquire(RequestID(i + 1), spec: Self.spec(id, gb: 2), keepAlive: nil, now: Double(i))
            let l = lease(s.started(id, now: Double(i)), for: RequestID(i + 1))!
            _ = s.release(l, now: Double(10 + i))  // a used longest ago, then b, then c
        }
        // A 3 GB model needs 3 GB freed out of 6 used: a and b go (LRU), c stays.
        let d = Self.spec("d", gb: 3)
        #expect(s.acquire(9, spec: d, keepAlive: nil, now: 20) == [.stop(model: "a", reason: .evicted), .stop(model: "b", reason: .evicted)])
        #expect(s.exited("a", reason: "", now: 21).isEmpty, "b still occupies the room")
        #expect(s.exited("b", reason: "", now: 22) == [.start(d)])
        #expect(s.runners["c"]?.phase == .ready)
    }

    @Test func idleRunnersAreNotEvictedWhenThatCouldNotMakeRoom() {
        var s = scheduler(maxLoaded: 2, budgetGB: 4)
        _ = s.acquire(1, spec: Self.spec("big", gb: 3), keepAlive: nil, now: 0)
        _ = s.started("big", now: 0)  // busy
        _ = s.acquire(2, spec: Self.spec("small", gb: 1), keepAlive: nil, now: 0)
        let l = lease(s.started("small", now: 0), for: 2)!
        _ = s.release(l, now: 1)  // idle
        // Another 3 GB model cannot fit while "big" is busy, even with "small" gone: keep "small".
        #expect(s.acquire(3, spec: Self.spec("other", gb: 3), keepAlive: nil, now: 2).isEmpty)
        #expect(s.runners["small"]?.phase == .ready)
    }

    @Test func theQueueIsFIFOAcrossModelsForRoom() {
        var s = scheduler(maxLoaded: 1)
        _ = s.acquire(1, spec: Self.spec("a"), keepAlive: nil, now: 0)
        let la = lease(s.started("a", now: 0), for: 1)!
        _ = s.acquire(2, spec: Self.spec("b"), keepAlive: nil, now: 1)  // first in line for the slot
        _ = s.acquire(3, spec: Self.spec("c"), keepAlive: nil, now: 2)
        _ = s.acquire(4, spec: Self.spec("a"), keepAlive: nil, now: 3)  // a is ready: granted, not blocked by b
        #expect(s.waiters.map(\.id) == [2, 3])
        _ = s.release(la, now: 4)
        #expect(s.runners["a"]?.leases.count == 1, "request 4 still holds a")
        let l4 = s.runners["a"]!.leases.first!
        #expect(s.release(l4, now: 5) == [.stop(model: "a", reason: .evicted)])
        #expect(s.exited("a", reason: "", now: 6) == [.start(Self.spec("b"))], "b was first, c waits")
    }

    @Test func aFullQueueAnswersBusyWithARetryHint() {
        var s = scheduler(maxLoaded: 1, queue: 2)
        let a = Self.spec("a", concurrency: 1)
        _ = s.acquire(1, spec: a, keepAlive: nil, now: 0)
        _ = s.started("a", now: 0)
        _ = s.acquire(2, spec: a, keepAlive: nil, now: 0)
        _ = s.acquire(3, spec: a, keepAlive: nil, now: 0)
        #expect(s.acquire(4, spec: a, keepAlive: nil, now: 0) == [.reject(request: 4, .busy(model: "a", queued: 2, retryAfterSeconds: 2))])
    }

    @Test func aCancelledWaiterLeavesTheQueueAndNeverCausesALoad() {
        var s = scheduler(maxLoaded: 1)
        _ = s.acquire(1, spec: Self.spec("a"), keepAlive: nil, now: 0)
        let la = lease(s.started("a", now: 0), for: 1)!
        _ = s.acquire(2, spec: Self.spec("b"), keepAlive: nil, now: 1)
        #expect(s.cancel(2, now: 2).isEmpty)
        #expect(s.waiters.isEmpty)
        // a's release now evicts nothing and starts nothing.
        #expect(s.release(la, now: 3).isEmpty)
        #expect(s.runners.keys.sorted() == ["a"])
    }

    @Test func ttlUnloadsIdleRunnersAndAnArrivingRequestNeverRacesIt() {
        var s = scheduler()
        let a = Self.spec("a", ttl: 10)
        _ = s.acquire(1, spec: a, keepAlive: nil, now: 0)
        let l = lease(s.started("a", now: 0), for: 1)!
        _ = s.release(l, now: 5)
        #expect(s.tick(now: 14).isEmpty, "counted from the last release")
        #expect(s.expiry("a") == 15)
        // A request just before expiry keeps the runner.
        let l2 = lease(s.acquire(2, spec: a, keepAlive: nil, now: 14.9), for: 2)!
        #expect(s.tick(now: 20).isEmpty)
        _ = s.release(l2, now: 21)
        #expect(s.tick(now: 31) == [.stop(model: "a", reason: .idle)])
        // A request arriving while it stops waits for a fresh runner: no error.
        #expect(s.acquire(3, spec: a, keepAlive: nil, now: 31.5).isEmpty)
        #expect(s.exited("a", reason: "", now: 32) == [.start(a)])
        #expect(grants(s.started("a", now: 33)) == [3])
    }

    @Test func keepAliveZeroUnloadsWhenIdleAndNegativeNever() {
        var s = scheduler()
        let a = Self.spec("a", ttl: 10)
        _ = s.acquire(1, spec: a, keepAlive: 0, now: 0)
        let l = lease(s.started("a", now: 0), for: 1)!
        #expect(s.release(l, now: 1) == [.stop(model: "a", reason: .requested)])
        var t = scheduler()
        _ = t.acquire(1, spec: a, keepAlive: -1, now: 0)
        _ = t.release(lease(t.started("a", now: 0), for: 1)!, now: 1)
        #expect(t.tick(now: 100_000).isEmpty)
    }

    @Test func differentLoadParametersRestartOnlyWhenIdle() {
        var s = scheduler()
        let old = Self.spec("a", fingerprint: "ctx2048"), new = Self.spec("a", fingerprint: "ctx4096")
        _ = s.acquire(1, spec: old, keepAlive: nil, now: 0)
        let l = lease(s.started("a", now: 0), for: 1)!
        #expect(s.acquire(2, spec: new, keepAlive: nil, now: 1).isEmpty, "busy: no restart")
        #expect(s.acquire(3, spec: old, keepAlive: nil, now: 2).isEmpty, "later requests queue behind the reload (FIFO)")
        #expect(s.release(l, now: 3) == [.stop(model: "a", reason: .reload)])
        #expect(s.exited("a", reason: "", now: 4) == [.start(new)])
        #expect(grants(s.started("a", now: 5)) == [2])
    }

    @Test func aCrashFailsItsLeasesAndThreeCrashesInAMinuteBackOff() {
        var s = scheduler()
        let a = Self.spec("a")
        _ = s.acquire(1, spec: a, keepAlive: nil, now: 0)
        let l = lease(s.started("a", now: 0), for: 1)!
        #expect(s.exited("a", reason: "killed by signal 9", now: 1) == [.failLeases(model: "a", leases: [l], reason: "killed by signal 9")])
        // The next acquire restarts it.
        #expect(s.acquire(2, spec: a, keepAlive: nil, now: 2) == [.start(a)])
        _ = s.startFailed("a", reason: "exit 1", now: 3)
        #expect(s.acquire(3, spec: a, keepAlive: nil, now: 4) == [.start(a)])
        // The third failure within 60 s: backoff of 5 s, requests fail fast with the reason.
        let third = s.startFailed("a", reason: "error: out of memory", now: 5)
        #expect(third == [.reject(request: 3, .failed(model: "a", reason: "it crashed 3 times within 60 s: error: out of memory", retryAfterSeconds: 5))])
        #expect(s.acquire(4, spec: a, keepAlive: nil, now: 7) == [.reject(request: 4, .failed(model: "a", reason: "it crashed 3 times within 60 s: error: out of memory", retryAfterSeconds: 3))])
        // After the backoff it is tried again; another failure doubles the backoff.
        #expect(s.acquire(5, spec: a, keepAlive: nil, now: 10.5) == [.start(a)])
        _ = s.startFailed("a", reason: "again", now: 11)
        #expect(s.failures["a"]?.backoffUntil == 21)
    }
}
