import Testing
@testable import RunnerManager
import Shared

/// The swap policy, pinned and resident models and abandoned loads, on the pure scheduler.
@Suite struct SchedulerPolicyTests {
    static let gb = 1 << 30
    static func spec(_ id: String, gb: Int = 1, concurrency: Int = 4, ttl: Double = 300, pinned: Bool = false) -> ModelSpec {
        ModelSpec(id: id, fingerprint: "f", memoryBytes: gb * Self.gb, concurrency: concurrency, ttlSeconds: ttl, pinned: pinned)
    }

    static func scheduler(maxLoaded: Int = 1, budgetGB: Int = 8, policy: SwapPolicy = .batch, maxWait: Double = 10,
                          preload: [ModelSpec] = [], resident: ModelSpec? = nil) -> Scheduler {
        Scheduler(config: .init(maxLoaded: maxLoaded, budgetBytes: budgetGB * Self.gb, queueLimit: 64, policy: policy, maxWait: maxWait,
                                preload: preload, resident: resident, residentIdle: 30))
    }

    static func grants(_ actions: [SchedulerAction]) -> [RequestID] {
        actions.compactMap { if case .grant(let r, _, _) = $0 { r } else { nil } }
    }

    static func leases(_ actions: [SchedulerAction]) -> [RequestID: LeaseID] {
        var out: [RequestID: LeaseID] = [:]
        for a in actions { if case .grant(let r, _, let l) = a { out[r] = l } }
        return out
    }

    /// `a` loaded with one lease per request in `held`, at time 0.
    static func loadedA(_ s: inout Scheduler, requests: [RequestID], concurrency: Int = 4) -> [RequestID: LeaseID] {
        let a = spec("a", concurrency: concurrency)
        var out: [RequestID: LeaseID] = [:]
        for r in requests { _ = s.acquire(r, spec: a, keepAlive: nil, now: 0) }
        out.merge(leases(s.started("a", now: 0))) { $1 }
        return out
    }

    @Test func batchKeepsServingTheLoadedModelWhileAnotherWaitsWithinMaxWait() {
        var s = Self.scheduler()
        let held = Self.loadedA(&s, requests: [1])
        _ = s.acquire(2, spec: Self.spec("b"), keepAlive: nil, now: 1)
        // New requests for the loaded model are served at once while b's wait is under 10 s.
        #expect(Self.grants(s.acquire(3, spec: Self.spec("a"), keepAlive: nil, now: 5)) == [3])
        #expect(s.nextDecision(now: 5) == 11, "the scheduler must be woken when b's patience runs out")
        _ = s.release(held[1]!, now: 6)
        #expect(s.runners["a"]?.phase == .ready, "a still has a lease: no swap")
    }

    @Test func theOldestStarvingRequestDrainsTheLoadedModelAndWinsTheNextSwap() {
        var s = Self.scheduler()
        let held = Self.loadedA(&s, requests: [1])
        _ = s.acquire(2, spec: Self.spec("b"), keepAlive: nil, now: 1)
        _ = s.acquire(3, spec: Self.spec("c"), keepAlive: nil, now: 2)
        // At 11 s b has waited its 10 s: a takes no new request.
        #expect(s.tick(now: 11).isEmpty)
        #expect(s.acquire(4, spec: Self.spec("a"), keepAlive: nil, now: 11.5).isEmpty, "a drains: request 4 waits")
        // a's last lease ends: a goes, and b (oldest) starts, not c.
        #expect(s.release(held[1]!, now: 12) == [.stop(model: "a", reason: .evicted)])
        #expect(s.exited("a", reason: "", now: 12.3) == [.start(Self.spec("b"))])
        #expect(Self.grants(s.started("b", now: 12.6)) == [2])
    }

    @Test func fifoDrainsAtOnce() {
        var s = Self.scheduler(policy: .fifo)
        let held = Self.loadedA(&s, requests: [1])
        _ = s.acquire(2, spec: Self.spec("b"), keepAlive: nil, now: 1)
        #expect(s.acquire(3, spec: Self.spec("a"), keepAlive: nil, now: 1.5).isEmpty, "a is draining for b")
        #expect(s.release(held[1]!, now: 2) == [.stop(model: "a", reason: .evicted)])
        #expect(s.exited("a", reason: "", now: 2.2) == [.start(Self.spec("b"))])
        // b's request goes first; then a's request 3, older than anything after it, drains b in turn.
        let ready = s.started("b", now: 2.5)
        #expect(Self.grants(ready) == [2])
        #expect(s.acquire(4, spec: Self.spec("b"), keepAlive: nil, now: 2.6).isEmpty, "b drains for the older request 3")
        #expect(s.release(Self.leases(ready)[2]!, now: 3) == [.stop(model: "b", reason: .evicted)])
    }

    @Test func aRunnerWithOlderWaitersOfItsOwnServesThemBeforeDraining() {
        var s = Self.scheduler(policy: .fifo)
        let held = Self.loadedA(&s, requests: [1], concurrency: 1)
        _ = s.acquire(2, spec: Self.spec("a", concurrency: 1), keepAlive: nil, now: 1)  // queued behind 1 (cap 1)
        _ = s.acquire(3, spec: Self.spec("b"), keepAlive: nil, now: 2)
        // Request 2 came before b's: it is served before a drains.
        let next = s.release(held[1]!, now: 3)
        #expect(Self.grants(next) == [2])
        #expect(s.release(Self.leases(next)[2]!, now: 4) == [.stop(model: "a", reason: .evicted)])
    }

    @Test func requestsThatFitBesideTheLoadedModelAreNeverDelayed() {
        var s = Self.scheduler(maxLoaded: 2, policy: .fifo)
        _ = Self.loadedA(&s, requests: [1])
        #expect(s.acquire(2, spec: Self.spec("b"), keepAlive: nil, now: 1) == [.start(Self.spec("b"))])
        #expect(Self.grants(s.acquire(3, spec: Self.spec("a"), keepAlive: nil, now: 1.1)) == [3])
    }

    /// Closed-loop clients (as the benchmark runs them) for three models on one slot, with random think
    /// and service times: three clients of `a` with no think time keep a queue for its two slots, which
    /// under a policy without a bound would starve the others for ever. No request waits beyond maxWait
    /// plus, for each other model that may be starving before it, one drain (a service time) and one
    /// swap, plus one service time queued behind its own model's slots.
    /// Each run is simulated on a thread of its own: eight runs are seconds of CPU in a debug build,
    /// which on the cooperative pool would hold its two threads from the socket tests alongside.
    @Test(arguments: [1, 2, 3, 4, 5, 6, 7, 8] as [UInt64])
    func noRequestWaitsBeyondTheBound(seed: UInt64) async {
        let run = await onThreadOfItsOwn { Self.closedLoopClients(seed: seed) }
        #expect(run.unexpected.isEmpty, "unexpected actions: \(run.unexpected)")
        #expect(run.waits.count > 200, "\(run.waits.count) requests served")
        #expect(run.worst <= run.bound, "a request waited \(run.worst) s (bound \(run.bound) s)")
        #expect(run.waits.filter { $0 > 1 }.count > 10, "the loaded model's preference made some requests wait")
    }

    struct ClosedLoopRun: Sendable {
        var waits: [Double]
        var worst: Double
        var bound: Double
        var unexpected: [String]
    }

    static func closedLoopClients(seed: UInt64) -> ClosedLoopRun {
        var unexpected: [String] = []
        var rng = SplitMix(seed: seed)
        let maxWait = 5.0, longestService = 0.6, swap = 0.3
        var s = Self.scheduler(maxWait: maxWait)
        let models = ["a", "b", "c"].map { Self.spec($0, concurrency: 2) }
        let clients = [0, 0, 0, 1, 1, 2]  // each client's model
        var nextSend: [Double] = clients.map { _ in rng.unit() }
        var inFlight: [RequestID: Int] = [:]  // request -> client
        var arrived: [RequestID: Double] = [:]
        var waits: [Double] = []
        var events: [(at: Double, event: Event)] = []
        enum Event { case release(LeaseID, client: Int), exited(String), started(String) }
        var now = 0.0, next: RequestID = 1
        func handle(_ actions: [SchedulerAction]) {
            for a in actions {
                switch a {
                case .grant(let r, _, let l):
                    waits.append(now - arrived.removeValue(forKey: r)!)
                    events.append((now + longestService * (0.2 + 0.8 * rng.unit()), .release(l, client: inFlight[r]!)))
                case .stop(let m, _): events.append((now + swap / 2, .exited(m)))
                case .start(let spec): events.append((now + swap / 2, .started(spec.id)))
                default: unexpected.append("\(a)")
                }
            }
        }
        while now < 200 {
            now += 0.01
            for (c, at) in nextSend.enumerated() where at <= now {
                nextSend[c] = .infinity
                let r = next
                next += 1
                arrived[r] = now
                inFlight[r] = c
                handle(s.acquire(r, spec: models[clients[c]], keepAlive: nil, now: now))
            }
            let due = events.filter { $0.at <= now }
            events.removeAll { $0.at <= now }
            for (_, event) in due {
                switch event {
                case .release(let l, let c):
                    nextSend[c] = clients[c] == 0 ? now : now + rng.unit()
                    handle(s.release(l, now: now))
                case .exited(let m): handle(s.exited(m, reason: "", now: now))
                case .started(let m): handle(s.started(m, now: now))
                }
            }
            if let due = s.nextDecision(now: now), due <= now { handle(s.tick(now: now)) }
        }
        let bound = maxWait + 2 * (longestService + swap) + longestService + 0.05
        // Requests never granted count with the time they have waited so far.
        let worst = (waits + arrived.values.map { now - $0 }).max() ?? 0
        return ClosedLoopRun(waits: waits, worst: worst, bound: bound, unexpected: unexpected)
    }

    @Test func aPinnedModelIsNeverEvictedAndWhatCannotFitBesideItIsRefused() {
        var s = Self.scheduler(maxLoaded: 2, budgetGB: 4)
        let p = Self.spec("p", gb: 3, pinned: true)
        _ = s.acquire(1, spec: p, keepAlive: nil, now: 0)
        let l = Self.leases(s.started("p", now: 0))[1]!
        _ = s.release(l, now: 1)
        // A 1 GB model fits beside it; a 2 GB one never can.
        #expect(s.acquire(2, spec: Self.spec("small"), keepAlive: nil, now: 2) == [.start(Self.spec("small"))])
        let refused = s.acquire(3, spec: Self.spec("big", gb: 2), keepAlive: nil, now: 3)
        guard case .reject(3, .wontFit(let model, let reason))? = refused.first else {
            Issue.record("expected a refusal, got \(refused)")
            return
        }
        #expect(model == "big")
        #expect(reason.contains("pinned models p") && reason.contains("4 GB budget"), "\(reason)")
        // Not unloaded when idle either, however long.
        #expect(s.tick(now: 100_000).filter { if case .stop("p", _) = $0 { true } else { false } }.isEmpty)
        #expect(s.runners["p"]?.phase == .ready)
        // An explicit unload still unloads it.
        #expect(s.unload("p", now: 100_001) == [.stop(model: "p", reason: .requested)])
    }

    @Test func keepAliveNegativePinsTheRunnerUntilItIsUnloaded() {
        var s = Self.scheduler()
        _ = s.acquire(1, spec: Self.spec("a"), keepAlive: -1, now: 0)
        let l = Self.leases(s.started("a", now: 0))[1]!
        _ = s.release(l, now: 1)
        #expect(s.runners["a"]?.isPinned == true)
        let refused = s.acquire(2, spec: Self.spec("b"), keepAlive: nil, now: 2)
        #expect(refused.count == 1 && { if case .reject(2, .wontFit) = refused[0] { true } else { false } }(), "\(refused)")
        #expect(s.unload("a", now: 3) == [.stop(model: "a", reason: .requested)])
        #expect(s.exited("a", reason: "", now: 4).isEmpty)
        #expect(s.acquire(3, spec: Self.spec("b"), keepAlive: nil, now: 5) == [.start(Self.spec("b"))])
    }

    @Test func anAbandonedLoadStopsWhenAnotherModelWaitsAndMayFinishOtherwise() {
        var s = Self.scheduler()
        #expect(s.acquire(1, spec: Self.spec("a"), keepAlive: nil, now: 0) == [.start(Self.spec("a"))])
        // Nobody else wants the room: the load goes on after its waiter leaves.
        #expect(s.cancel(1, now: 0.1).isEmpty)
        #expect(s.runners["a"]?.phase == .starting)
        // b arrives and needs the room: a's load is stopped, b starts once a has gone.
        #expect(s.acquire(2, spec: Self.spec("b"), keepAlive: nil, now: 0.2) == [.stop(model: "a", reason: .abandoned)])
        #expect(s.startFailed("a", reason: "terminated", now: 0.3) == [.start(Self.spec("b"))])
        #expect(s.failures["a"] == nil, "a stop on purpose is not a crash")
        // With a waiter still there, the load is kept.
        var t = Self.scheduler()
        _ = t.acquire(1, spec: Self.spec("a"), keepAlive: nil, now: 0)
        _ = t.acquire(2, spec: Self.spec("a"), keepAlive: nil, now: 0)
        _ = t.cancel(1, now: 0.1)
        #expect(t.acquire(3, spec: Self.spec("b"), keepAlive: nil, now: 0.2).isEmpty)
        #expect(t.runners["a"]?.phase == .starting)
        // With stop_abandoned_loads off, the load finishes and b gets the room after it.
        var u = Self.scheduler()
        u.config.stopAbandoned = false
        _ = u.acquire(1, spec: Self.spec("a"), keepAlive: nil, now: 0)
        _ = u.cancel(1, now: 0.1)
        #expect(u.acquire(2, spec: Self.spec("b"), keepAlive: nil, now: 0.2).isEmpty)
        #expect(u.started("a", now: 1) == [.stop(model: "a", reason: .evicted)])
    }

    @Test func preloadStartsAtConfigurationAndAfterACrashWithinTheBackoff() {
        let p = Self.spec("p")
        var s = Self.scheduler(maxLoaded: 2)
        #expect(s.configure(Self.scheduler(maxLoaded: 2, preload: [p]).config, now: 0) == [.start(p)])
        _ = s.started("p", now: 1)
        #expect(s.runners["p"]?.phase == .ready)
        // A crash brings it back by itself, three times in a minute; then the backoff holds it.
        #expect(s.exited("p", reason: "killed", now: 2) == [.start(p)])
        #expect(s.startFailed("p", reason: "exit 1", now: 3) == [.start(p)])
        #expect(s.startFailed("p", reason: "exit 1", now: 4).isEmpty, "third crash: backoff of 5 s")
        #expect(s.tick(now: 8.9).isEmpty)
        #expect(s.tick(now: 9.1) == [.start(p)])
        // It waits for room rather than evicting, and only once no request waits.
        var t = Self.scheduler(maxLoaded: 1)
        _ = Self.loadedA(&t, requests: [1])
        #expect(t.configure(Self.scheduler(maxLoaded: 1, preload: [p]).config, now: 1).isEmpty)
    }

    @Test func theResidentModelComesBackOnceTheMachineIsIdle() {
        let r = Self.spec("r")
        var s = Self.scheduler(resident: r)
        #expect(s.tick(now: 0) == [.start(r)], "loaded at start")
        _ = s.started("r", now: 1)
        // A request for a displaces it.
        _ = s.acquire(1, spec: Self.spec("a"), keepAlive: nil, now: 2)
        let stopR = s.tick(now: 2)
        #expect(stopR.isEmpty, "r had been stopped by the acquire already")
        #expect(s.runners["r"]?.phase == .stopping)
        #expect(s.exited("r", reason: "", now: 3) == [.start(Self.spec("a"))])
        let l = Self.leases(s.started("a", now: 4))[1]!
        _ = s.release(l, now: 5)
        // 30 s of nothing: a is evicted for r, then r starts.
        #expect(s.tick(now: 34).isEmpty)
        #expect(s.tick(now: 35.1) == [.stop(model: "a", reason: .evicted)])
        #expect(s.exited("a", reason: "", now: 36) == [.start(r)])
    }
}

/// A small deterministic generator for the randomized schedule.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func unit() -> Double { Double(next() >> 11) / Double(1 << 53) }
}
