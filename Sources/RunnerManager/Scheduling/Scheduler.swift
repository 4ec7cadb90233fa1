/// One acquire while it waits.
typealias RequestID = UInt64
/// One granted use of a runner, from acquire to release.
typealias LeaseID = UInt64

/// What the scheduler needs to know about a model.
struct ModelSpec: Sendable, Equatable {
    let id: String
    /// A hash of the load-time arguments: a different one means a different runner.
    let fingerprint: String
    /// Estimated memory: file size + KV cache + overhead.
    let memoryBytes: Int
    /// Leases served at once (the runner's `--parallel`, or 4).
    let concurrency: Int
    /// Idle seconds before unloading (-1 = never).
    let ttlSeconds: Double
}

/// Why a request was refused.
enum SchedulerError: Error, Sendable, Equatable, CustomStringConvertible {
    case busy(model: String, queued: Int, retryAfterSeconds: Int)
    case failed(model: String, reason: String, retryAfterSeconds: Int?)

    var description: String {
        switch self {
        case .busy(let m, let q, let r): "model \(m) is busy: \(q) requests are already waiting; retry after \(r) s"
        case .failed(let m, let reason, let r):
            "model \(m) failed: \(reason)" + (r.map { "; it will be retried after \($0) s" } ?? "")
        }
    }
}

/// Why a runner is stopped.
enum StopReason: String, Sendable, Equatable {
    case idle, evicted, reload, requested
}

/// What the runner manager must do after an event.
enum SchedulerAction: Sendable, Equatable {
    case start(ModelSpec)
    case stop(model: String, reason: StopReason)
    case grant(request: RequestID, model: String, lease: LeaseID)
    case reject(request: RequestID, SchedulerError)
    /// A runner died under these leases.
    case failLeases(model: String, leases: [LeaseID], reason: String)
}

/// Decides which runners run, who waits, and what goes — as a pure state machine: events in,
/// actions out, time passed in, no I/O. Rules (each one a failure seen in llama-swap or llama-server's router):
/// - concurrent acquires for a loading model join that load; a ready model is granted at once, up to
///   its concurrency; requests for one model are served in arrival order;
/// - `maxLoaded` and `budgetBytes` decide what must go to make room: idle runners, least recently used
///   first; a runner with leases is never stopped to make room (llama-server's router evicts mid-request);
/// - when a model cannot get room yet, later models do not take room before it (fair);
/// - the queue per model is bounded: beyond it, `busy` with a retry hint; a cancelled waiter leaves
///   without ever causing a load;
/// - an idle runner unloads after its TTL (from the last release; `keepAlive` 0 = when idle, < 0 = never);
///   a request that arrives for a stopping runner waits for a fresh one, never an error;
/// - a request with different load-time arguments restarts a runner only once it is idle;
/// - three crashes within 60 s → backoff of 5 s, doubling to 5 min, during which requests fail fast.
struct Scheduler: Sendable {
    struct Config: Sendable, Equatable {
        var maxLoaded: Int
        var budgetBytes: Int
        var queueLimit: Int
    }

    enum Phase: Sendable, Equatable { case starting, ready, stopping }

    struct Runner: Sendable, Equatable {
        var spec: ModelSpec
        var phase: Phase
        var leases: Set<LeaseID> = []
        var lastUsed: Double
        var idleSince: Double?
        /// Set by the latest acquire's keepAlive; nil = the model's TTL.
        var keepAlive: Double?
    }

    struct Waiter: Sendable, Equatable {
        let id: RequestID
        let spec: ModelSpec
        let keepAlive: Double?
    }

    struct Failures: Sendable, Equatable {
        var crashes: [Double] = []
        var backoff: Double = Scheduler.initialBackoff
        var backoffUntil: Double?
        var reason = ""
    }

    static let crashWindow = 60.0
    static let crashesBeforeBackoff = 3
    static let initialBackoff = 5.0
    static let maxBackoff = 300.0
    static let busyRetryAfter = 2

    var config: Config
    private(set) var runners: [String: Runner] = [:]
    private(set) var waiters: [Waiter] = []
    private(set) var failures: [String: Failures] = [:]
    private var nextLease: LeaseID = 0

    init(config: Config) { self.config = config }

    // MARK: Events

    mutating func acquire(_ id: RequestID, spec: ModelSpec, keepAlive: Double?, now: Double) -> [SchedulerAction] {
        if let rejection = backoffRejection(spec.id, now: now) { return [.reject(request: id, rejection)] }
        let queued = waiters.filter { $0.spec.id == spec.id }.count
        if queued >= config.queueLimit {
            return [.reject(request: id, .busy(model: spec.id, queued: queued, retryAfterSeconds: Self.busyRetryAfter))]
        }
        waiters.append(Waiter(id: id, spec: spec, keepAlive: keepAlive))
        return schedule(now: now)
    }

    mutating func release(_ lease: LeaseID, now: Double) -> [SchedulerAction] {
        guard let model = runners.first(where: { $0.value.leases.contains(lease) })?.key else { return [] }
        runners[model]!.leases.remove(lease)
        runners[model]!.lastUsed = now
        if runners[model]!.leases.isEmpty { runners[model]!.idleSince = now }
        return schedule(now: now)
    }

    /// The caller of a waiting request gave up.
    mutating func cancel(_ id: RequestID, now: Double) -> [SchedulerAction] {
        guard let i = waiters.firstIndex(where: { $0.id == id }) else { return [] }
        waiters.remove(at: i)
        return schedule(now: now)
    }

    mutating func started(_ model: String, now: Double) -> [SchedulerAction] {
        guard runners[model]?.phase == .starting else { return [] }
        runners[model]!.phase = .ready
        runners[model]!.idleSince = now
        if let f = failures[model], f.crashes.allSatisfy({ now - $0 >= Self.crashWindow }) { failures[model] = nil }
        return schedule(now: now)
    }

    /// A runner failed to become ready (exited during load, or stalled).
    mutating func startFailed(_ model: String, reason: String, now: Double) -> [SchedulerAction] {
        guard runners[model] != nil else { return [] }
        runners[model] = nil
        recordCrash(model, reason: reason, now: now)
        var actions: [SchedulerAction] = []
        let backedOff = backoffRejection(model, now: now)
        waiters.removeAll { w in
            guard w.spec.id == model else { return false }
            actions.append(.reject(request: w.id, backedOff ?? .failed(model: model, reason: reason, retryAfterSeconds: nil)))
            return true
        }
        return actions + schedule(now: now)
    }

    /// A runner process ended: expected when stopping, a crash otherwise.
    mutating func exited(_ model: String, reason: String, now: Double) -> [SchedulerAction] {
        guard let runner = runners[model] else { return [] }
        switch runner.phase {
        case .stopping:
            runners[model] = nil
            return schedule(now: now)
        case .starting:
            return startFailed(model, reason: reason, now: now)
        case .ready:
            runners[model] = nil
            recordCrash(model, reason: reason, now: now)
            var actions: [SchedulerAction] = []
            if !runner.leases.isEmpty {
                actions.append(.failLeases(model: model, leases: runner.leases.sorted(), reason: reason))
            }
            if let rejection = backoffRejection(model, now: now) {
                waiters.removeAll { w in
                    guard w.spec.id == model else { return false }
                    actions.append(.reject(request: w.id, rejection))
                    return true
                }
            }
            return actions + schedule(now: now)
        }
    }

    /// Unload on request: now if idle, otherwise as soon as its leases end.
    mutating func unload(_ model: String, now: Double) -> [SchedulerAction] {
        guard runners[model] != nil else { return [] }
        runners[model]!.keepAlive = 0
        return schedule(now: now)
    }

    /// A runner that is already running and ready (adopted after a restart).
    mutating func adopt(_ spec: ModelSpec, now: Double) {
        runners[spec.id] = Runner(spec: spec, phase: .ready, lastUsed: now, idleSince: now, keepAlive: nil)
    }

    /// The clock moved: idle runners past their TTL go.
    mutating func tick(now: Double) -> [SchedulerAction] { schedule(now: now) }

    // MARK: Queries

    func queuedCount(_ model: String) -> Int { waiters.filter { $0.spec.id == model }.count }

    /// When an idle runner will unload (nil: busy, never, or not ready).
    func expiry(_ model: String) -> Double? {
        guard let r = runners[model], r.phase == .ready, r.leases.isEmpty, let since = r.idleSince else { return nil }
        let ttl = r.keepAlive ?? r.spec.ttlSeconds
        return ttl < 0 ? nil : since + ttl
    }

    // MARK: The decision

    private func backoffRejection(_ model: String, now: Double) -> SchedulerError? {
        guard let f = failures[model], let until = f.backoffUntil, until > now else { return nil }
        return .failed(model: model, reason: "it crashed \(f.crashes.count) times within \(Int(Self.crashWindow)) s: \(f.reason)",
                       retryAfterSeconds: Int((until - now).rounded(.up)))
    }

    private mutating func recordCrash(_ model: String, reason: String, now: Double) {
        var f = failures[model] ?? Failures()
        f.crashes = f.crashes.filter { now - $0 < Self.crashWindow } + [now]
        f.reason = reason
        if f.crashes.count >= Self.crashesBeforeBackoff {
            f.backoffUntil = now + f.backoff
            f.backoff = min(f.backoff * 2, Self.maxBackoff)
        }
        failures[model] = f
    }

    private mutating func schedule(now: Double) -> [SchedulerAction] {
        var actions: [SchedulerAction] = []

        // 1. Grant what can be granted, in arrival order per model.
        var blocked: [String] = []
        var remaining: [Waiter] = []
        for w in waiters {
            let model = w.spec.id
            if !blocked.contains(model), var r = runners[model], r.phase == .ready,
               r.spec.fingerprint == w.spec.fingerprint, r.leases.count < r.spec.concurrency {
                nextLease += 1
                r.leases.insert(nextLease)
                r.lastUsed = now
                r.idleSince = nil
                if let keepAlive = w.keepAlive { r.keepAlive = keepAlive }
                runners[model] = r
                actions.append(.grant(request: w.id, model: model, lease: nextLease))
            } else {
                if !blocked.contains(model) { blocked.append(model) }
                remaining.append(w)
            }
        }
        waiters = remaining

        // 2. Bring a runner for each waiting model, oldest waiter first.
        for model in blocked {
            guard let first = waiters.first(where: { $0.spec.id == model }) else { continue }
            if let r = runners[model] {
                if r.phase == .ready && r.spec.fingerprint != first.spec.fingerprint && r.leases.isEmpty {
                    runners[model]!.phase = .stopping
                    actions.append(.stop(model: model, reason: .reload))
                }
                continue  // starting, stopping, busy at its cap, or draining for a reload: wait
            }
            guard makeRoom(for: first.spec, actions: &actions) else { break }  // no room yet: later models wait too
            runners[model] = Runner(spec: first.spec, phase: .starting, lastUsed: now, idleSince: nil, keepAlive: first.keepAlive)
            actions.append(.start(first.spec))
        }

        // 3. Idle runners past their TTL unload.
        for (model, r) in runners where r.phase == .ready && r.leases.isEmpty && !waiters.contains(where: { $0.spec.id == model }) {
            if let until = expiry(model), until <= now {
                runners[model]!.phase = .stopping
                actions.append(.stop(model: model, reason: r.keepAlive == 0 ? .requested : .idle))
            }
        }
        return actions
    }

    /// True when `spec` can start now; otherwise stops idle victims (LRU) toward making room and
    /// returns false (the start happens on a later event, once they have stopped).
    private mutating func makeRoom(for spec: ModelSpec, actions: inout [SchedulerAction]) -> Bool {
        func usage(_ include: (Runner) -> Bool) -> (count: Int, bytes: Int) {
            runners.values.filter(include).reduce((0, 0)) { ($0.0 + 1, $0.1 + $1.spec.memoryBytes) }
        }
        func fits(_ u: (count: Int, bytes: Int)) -> Bool {
            u.count + 1 <= config.maxLoaded && (u.bytes + spec.memoryBytes <= config.budgetBytes || u.count == 0)
        }
        if fits(usage { _ in true }) { return true }
        // Room that will exist once runners already stopping are gone.
        if fits(usage { $0.phase != .stopping }) { return false }
        let waiting = Set(waiters.map(\.spec.id))
        let idle = runners.filter { $0.value.phase == .ready && $0.value.leases.isEmpty && !waiting.contains($0.key) }
            .sorted { ($0.value.lastUsed, $0.key) < ($1.value.lastUsed, $1.key) }
        // Evict only if enough idle runners exist; if busy runners hold the room, stopping idle ones
        // would lose them for nothing: wait instead.
        var victims: [String] = []
        var remaining = usage { $0.phase != .stopping }
        for (model, runner) in idle where !fits(remaining) {
            victims.append(model)
            remaining = (remaining.count - 1, remaining.bytes - runner.spec.memoryBytes)
        }
        guard fits(remaining) else { return false }
        for model in victims {
            runners[model]!.phase = .stopping
            actions.append(.stop(model: model, reason: .evicted))
        }
        return false
    }
}
