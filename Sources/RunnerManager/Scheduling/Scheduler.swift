import Shared

/// One acquire while it waits.
typealias RequestID = UInt64
/// One granted use of a runner, from acquire to release.
typealias LeaseID = UInt64

/// What the scheduler needs to know about a model.
struct ModelSpec: Sendable, Equatable {
    let id: String
    /// A hash of the load-time arguments: a different one means a different runner.
    let fingerprint: String
    /// Bytes it takes on each device it uses (`cpu`, a GPU's id): estimated before the load, measured
    /// once it is ready (`Scheduler.measured`).
    var memory: [String: Int]
    /// Leases served at once (the runner's `--parallel`, or 4).
    let concurrency: Int
    /// Idle seconds before unloading (-1 = never).
    let ttlSeconds: Double
    /// Never evicted for another model (the model entry's `pinned`); still counts against the limits.
    var pinned = false
    /// Where it runs and with what (GPUs, environment, parameter changes); nil = CPU, as configured.
    var placement: Placement?

    /// Everything on one device (the CPU unless said otherwise).
    init(id: String, fingerprint: String, memoryBytes: Int, device: String = Placement.cpu, concurrency: Int, ttlSeconds: Double,
         pinned: Bool = false) {
        self.init(id: id, fingerprint: fingerprint, memory: [device: memoryBytes], concurrency: concurrency, ttlSeconds: ttlSeconds, pinned: pinned)
    }

    init(id: String, fingerprint: String, memory: [String: Int], concurrency: Int, ttlSeconds: Double, pinned: Bool = false,
         placement: Placement? = nil) {
        self.id = id
        self.fingerprint = fingerprint
        self.memory = memory
        self.concurrency = concurrency
        self.ttlSeconds = ttlSeconds
        self.pinned = pinned
        self.placement = placement
    }

    /// All devices together (for lists and messages).
    var memoryBytes: Int { memory.values.reduce(0, +) }
}

/// How the scheduler chooses when requests for more models wait than can be loaded at once: the
/// config's own enum (`batch`: a loaded model keeps serving its queue for at most `maxWait`; `fifo`:
/// arrival order, a swap for nearly every request when models alternate).
typealias SwapPolicy = AppConfig.SwapPolicyName

/// Why a request was refused.
enum SchedulerError: Error, Sendable, Equatable, CustomStringConvertible {
    case busy(model: String, queued: Int, retryAfterSeconds: Int)
    case failed(model: String, reason: String, retryAfterSeconds: Int?)
    /// The model cannot be loaded beside the pinned ones, whatever else is unloaded.
    case wontFit(model: String, reason: String)

    var description: String {
        switch self {
        case .busy(let m, let q, let r): "model \(m) is busy: \(q) requests are already waiting; retry after \(r) s"
        case .failed(let m, let reason, let r):
            "model \(m) failed: \(reason)" + (r.map { "; it will be retried after \($0) s" } ?? "")
        case .wontFit(let m, let reason): "model \(m) cannot be loaded: \(reason)"
        }
    }
}

/// Why a runner is stopped.
enum StopReason: String, Sendable, Equatable {
    case idle, evicted, reload, requested
    /// A load every waiter gave up on, stopped so that another model gets the room.
    case abandoned
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
/// - three crashes within 60 s → backoff of 5 s, doubling to 5 min, during which requests fail fast;
/// - `batch` policy: a loaded model keeps serving its own queue while another model waits for room,
///   for at most `maxWait` beyond that request's arrival; then the runners in the oldest starving
///   request's way drain (no new grants) and go. `fifo`: they drain at once. Requests that fit beside
///   the loaded models never wait for the policy;
/// - a pinned runner (the model's `pinned`, or a request's `keepAlive` < 0 until it is unloaded) is
///   never evicted nor unloaded when idle; a model that cannot fit beside the pinned ones is refused;
/// - a load whose every waiter left is stopped when another model waits for its room;
/// - `preload` models start when the scheduler is configured and again after a crash (within the crash
///   backoff), when they fit without evicting anything; the `resident` model also comes back, evicting
///   idle runners, once nothing has happened for `residentIdle` seconds.
struct Scheduler: Sendable {
    struct Config: Sendable, Equatable {
        var maxLoaded: Int
        /// The CPU's budget (system RAM).
        var budgetBytes: Int
        /// Each GPU's budget by id; a device not listed has no limit but its own runners.
        var deviceBudgets: [String: Int] = [:]
        var queueLimit: Int
        var policy = SwapPolicy.batch
        /// Longest a request that needs room waits because a loaded model keeps serving its queue.
        var maxWait = 10.0
        /// Models loaded as soon as they fit, at configuration and after a crash.
        var preload: [ModelSpec] = []
        /// The model reloaded once the machine has been idle for `residentIdle` seconds.
        var resident: ModelSpec?
        var residentIdle = 30.0
        /// Stop a load every waiter left when another model waits for its room.
        var stopAbandoned = true
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
        /// Started with no request waiting (preload, resident): never "abandoned".
        var background = false

        /// Never evicted for another model, never unloaded for idleness (an explicit unload still
        /// goes: it sets `keepAlive` to 0).
        var isPinned: Bool { keepAlive != 0 && (spec.pinned || (keepAlive ?? 0) < 0) }
    }

    struct Waiter: Sendable, Equatable {
        let id: RequestID
        let spec: ModelSpec
        let keepAlive: Double?
        /// When the request arrived: what `maxWait` is counted from.
        var arrivedAt: Double = 0
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
    // Changed only by the scheduler's own methods (here and in Scheduler+Decision.swift); the runner
    // manager reads them.
    var runners: [String: Runner] = [:]
    var waiters: [Waiter] = []
    var failures: [String: Failures] = [:]
    /// Preload models still to start (set by `configure` and by crashes).
    var pendingPreload: Set<String> = []
    /// The last acquire or release: the machine is idle from then on.
    var lastActivity = 0.0
    var nextLease: LeaseID = 0

    init(config: Config) {
        self.config = config
        pendingPreload = Set(config.preload.map(\.id))
        if let resident = config.resident { pendingPreload.insert(resident.id) }
    }

    /// New limits and model sets: models that became `preload` (or the resident) are started when they fit.
    mutating func configure(_ new: Config, now: Double) -> [SchedulerAction] {
        let before = Set(config.preload.map(\.id) + [config.resident?.id].compactMap { $0 })
        let after = Set(new.preload.map(\.id) + [new.resident?.id].compactMap { $0 })
        pendingPreload = pendingPreload.intersection(after).union(after.subtracting(before))
        config = new
        return schedule(now: now)
    }

    // MARK: Events

    mutating func acquire(_ id: RequestID, spec: ModelSpec, keepAlive: Double?, now: Double) -> [SchedulerAction] {
        if let rejection = backoffRejection(spec.id, now: now) { return [.reject(request: id, rejection)] }
        let queued = waiters.filter { $0.spec.id == spec.id }.count
        if queued >= config.queueLimit {
            return [.reject(request: id, .busy(model: spec.id, queued: queued, retryAfterSeconds: Self.busyRetryAfter))]
        }
        waiters.append(Waiter(id: id, spec: spec, keepAlive: keepAlive, arrivedAt: now))
        lastActivity = now
        return schedule(now: now)
    }

    mutating func release(_ lease: LeaseID, now: Double) -> [SchedulerAction] {
        guard let model = runners.first(where: { $0.value.leases.contains(lease) })?.key else { return [] }
        runners[model]!.leases.remove(lease)
        runners[model]!.lastUsed = now
        if runners[model]!.leases.isEmpty { runners[model]!.idleSince = now }
        lastActivity = now
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
        guard let runner = runners[model] else { return [] }
        runners[model] = nil
        // A load stopped on purpose (abandoned, unloaded) ends like any stop: no crash to count.
        if runner.phase == .stopping { return schedule(now: now) }
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
        pendingPreload.remove(model)
        guard runners[model] != nil else { return [] }
        runners[model]!.keepAlive = 0
        return schedule(now: now)
    }

    /// The runner reported what it really took (its buffer sizes, the process's own usage): those
    /// figures replace the estimate from now on, for what fits beside it.
    mutating func measured(_ model: String, memory: [String: Int], now: Double) -> [SchedulerAction] {
        guard runners[model] != nil, !memory.isEmpty else { return [] }
        runners[model]!.spec.memory = memory
        return schedule(now: now)
    }

    /// A load that ran out of memory is tried again with `spec` (fewer layers, a smaller context, the
    /// CPU): the runner stays `starting`, with the new spec's figures.
    mutating func retry(_ model: String, spec: ModelSpec) {
        guard runners[model]?.phase == .starting else { return }
        runners[model]!.spec = spec
    }

    /// The first step of the out-of-memory ladder: every idle runner (not pinned, not wanted by a
    /// waiter) that uses `device` stops. Returns the models stopped.
    mutating func evictIdle(on device: String, except model: String) -> (models: [String], actions: [SchedulerAction]) {
        let waiting = Set(waiters.map(\.spec.id))
        let victims = runners.filter { m, r in
            m != model && r.phase == .ready && r.leases.isEmpty && !r.isPinned && !waiting.contains(m) && (r.spec.memory[device] ?? 0) > 0
        }.keys.sorted()
        for m in victims { runners[m]!.phase = .stopping }
        return (victims, victims.map { .stop(model: $0, reason: .evicted) })
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
        if r.isPinned { return nil }
        let ttl = r.keepAlive ?? r.spec.ttlSeconds
        return ttl < 0 ? nil : since + ttl
    }
}
