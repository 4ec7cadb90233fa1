import Shared

/// The decision the scheduler takes after every event: drains, grants, abandoned loads, loads and
/// evictions, idle unloads, preloads. Pure: it reads and changes only the scheduler's own state.
extension Scheduler {
    /// Where a model's runner can find room.
    enum Room: Equatable {
        /// It fits now.
        case now
        /// Not yet: runners are stopping (perhaps just told to) or busy.
        case later
        /// Never while the pinned runners stay; the reason names them and the limits.
        case never(String)
    }

    /// Count of the runners `include` selects, and their memory and number on each device.
    struct Usage {
        var count = 0
        var bytes: [String: Int] = [:]
        var users: [String: Int] = [:]

        mutating func add(_ spec: ModelSpec) {
            count += 1
            for (device, b) in spec.memory where b > 0 { bytes[device, default: 0] += b; users[device, default: 0] += 1 }
        }

        mutating func remove(_ spec: ModelSpec) {
            count -= 1
            for (device, b) in spec.memory where b > 0 { bytes[device, default: 0] -= b; users[device, default: 0] -= 1 }
        }
    }

    func usage(_ include: (Runner) -> Bool) -> Usage {
        runners.values.filter(include).reduce(into: Usage()) { u, r in u.add(r.spec) }
    }

    /// A device's budget: system RAM's for the CPU, each GPU's own.
    func budget(_ device: String) -> Int {
        device == Placement.cpu ? config.budgetBytes : config.deviceBudgets[device] ?? Int.max
    }

    /// The devices where `spec` lacks room beside `u` (a model larger than a device's budget still
    /// runs alone there: the out-of-memory ladder decides what it can hold).
    func shortDevices(_ spec: ModelSpec, beside u: Usage) -> [String] {
        spec.memory.filter { device, b in
            b > 0 && (u.users[device] ?? 0) > 0 && (u.bytes[device] ?? 0) + b > budget(device)
        }.keys.sorted()
    }

    /// Whether `spec` fits beside `u`: within max_loaded_models, and within the budget of every device it uses.
    func fits(_ spec: ModelSpec, beside u: Usage) -> Bool {
        u.count + 1 <= config.maxLoaded && shortDevices(spec, beside: u).isEmpty
    }

    /// Whether stopping `victim` gives `spec` some of what it lacks beside `u`: a place under the
    /// count limit, or bytes on a device that is short. A runner on another GPU is never evicted for it.
    func relieves(_ victim: ModelSpec, for spec: ModelSpec, beside u: Usage) -> Bool {
        if u.count + 1 > config.maxLoaded { return true }
        return shortDevices(spec, beside: u).contains { (victim.memory[$0] ?? 0) > 0 }
    }

    /// Why `spec` cannot fit beside `u`, for messages: the count limit, or the first short device.
    func shortfall(_ spec: ModelSpec, beside u: Usage) -> String {
        if u.count + 1 > config.maxLoaded { return "\(u.count) of max_loaded_models \(config.maxLoaded)" }
        guard let device = shortDevices(spec, beside: u).first else { return "nothing" }
        let name = device == Placement.cpu ? "system memory" : device
        return "\(ModelMemory.gigabytes(u.bytes[device] ?? 0)) of the \(ModelMemory.gigabytes(budget(device))) budget of \(name), "
            + "where it needs \(ModelMemory.gigabytes(spec.memory[device] ?? 0))"
    }

    /// How long a request that needs room waits for the loaded models' own queues.
    var patience: Double { config.policy == .fifo ? 0 : config.maxWait }

    /// The earliest time a waiting request becomes starving (the policy then drains runners for it).
    func nextDecision(now: Double) -> Double? {
        guard config.policy == .batch else { return nil }
        return waiters.lazy.filter { self.runners[$0.spec.id] == nil && $0.arrivedAt + self.patience > now }
            .map { $0.arrivedAt + self.patience }.min()
    }

    // MARK: Deciding

    mutating func schedule(now: Double) -> [SchedulerAction] {
        var actions: [SchedulerAction] = []
        let draining = drainingRunners(now: now)

        // 1. Grant what can be granted, in arrival order per model; draining runners take no one.
        var blocked: [String] = []
        var remaining: [Waiter] = []
        for w in waiters {
            let model = w.spec.id
            if !blocked.contains(model), !draining.contains(model), var r = runners[model], r.phase == .ready,
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

        // 2. Loads nobody waits for any more give their room to a model that waits for it.
        stopAbandonedLoads(actions: &actions)

        // 3. Bring a runner for each waiting model, oldest waiter first.
        loads: for model in blocked {
            guard let first = waiters.first(where: { $0.spec.id == model }) else { continue }
            if let r = runners[model] {
                if r.phase == .ready && r.spec.fingerprint != first.spec.fingerprint && r.leases.isEmpty {
                    runners[model]!.phase = .stopping
                    actions.append(.stop(model: model, reason: .reload))
                }
                continue  // starting, stopping, busy at its cap, draining, or draining for a reload: wait
            }
            switch makeRoom(for: first.spec, draining: draining, actions: &actions) {
            case .now:
                runners[model] = Runner(spec: first.spec, phase: .starting, lastUsed: now, idleSince: nil, keepAlive: first.keepAlive)
                pendingPreload.remove(model)
                actions.append(.start(first.spec))
            case .later:
                break loads  // no room yet: later models wait too
            case .never(let reason):
                waiters.removeAll { w in
                    guard w.spec.id == model else { return false }
                    actions.append(.reject(request: w.id, .wontFit(model: model, reason: reason)))
                    return true
                }
            }
        }

        // 4. Idle runners past their TTL unload.
        for (model, r) in runners where r.phase == .ready && r.leases.isEmpty && !waiters.contains(where: { $0.spec.id == model }) {
            if let until = expiry(model), until <= now {
                runners[model]!.phase = .stopping
                actions.append(.stop(model: model, reason: r.keepAlive == 0 ? .requested : .idle))
            }
        }

        // 5. Models that should be loaded without a request.
        startBackgroundLoads(now: now, actions: &actions)
        return actions
    }

    /// The runners that take no new requests so that the oldest starving request gets its room: a
    /// request that needs a runner started and has waited `patience` (0 for `fifo`). Idle runners go
    /// first, then the least recently used; pinned ones never, nor ones with a waiter older than the
    /// starving request (arrival order among those comes first). Empty when the request fits once the
    /// runners already stopping are gone, or cannot fit even with every candidate gone.
    func drainingRunners(now: Double) -> Set<String> {
        guard let index = waiters.firstIndex(where: { runners[$0.spec.id] == nil && now - $0.arrivedAt >= patience }) else { return [] }
        let starving = waiters[index]
        var left = usage { $0.phase != .stopping }
        if fits(starving.spec, beside: left) { return [] }
        let servedFirst = Set(waiters[..<index].map(\.spec.id))
        let candidates = runners.filter { $0.value.phase == .ready && !$0.value.isPinned && !servedFirst.contains($0.key) }
            .sorted { ($0.value.leases.isEmpty ? 0 : 1, $0.value.lastUsed, $0.key) < ($1.value.leases.isEmpty ? 0 : 1, $1.value.lastUsed, $1.key) }
        var chosen: Set<String> = []
        for (model, r) in candidates where !fits(starving.spec, beside: left) && relieves(r.spec, for: starving.spec, beside: left) {
            chosen.insert(model)
            left.remove(r.spec)
        }
        return fits(starving.spec, beside: left) ? chosen : []
    }

    /// Stops loads that were started for requests which have all gone, when a model that waits for a
    /// start does not fit beside them. A load nobody else needs the room for may finish.
    mutating func stopAbandonedLoads(actions: inout [SchedulerAction]) {
        guard config.stopAbandoned else { return }
        let wanted = Set(waiters.map(\.spec.id))
        let abandoned = runners.filter { $0.value.phase == .starting && !$0.value.background && !$0.value.isPinned && !wanted.contains($0.key) }
        guard !abandoned.isEmpty else { return }
        let room = usage { $0.phase != .stopping }
        guard waiters.contains(where: { runners[$0.spec.id] == nil && !fits($0.spec, beside: room) }) else { return }
        for model in abandoned.keys.sorted() {
            runners[model]!.phase = .stopping
            actions.append(.stop(model: model, reason: .abandoned))
        }
    }

    /// `now` when `spec` can start at once; otherwise stops idle victims (LRU) toward making room and
    /// answers `later` (the start happens on a later event, once they have stopped). Idle runners that
    /// have waiters of their own are kept unless they drain for this request.
    mutating func makeRoom(for spec: ModelSpec, draining: Set<String>, actions: inout [SchedulerAction]) -> Room {
        if fits(spec, beside: usage { _ in true }) { return .now }
        let pinned = usage { $0.isPinned && $0.phase != .stopping }
        if !fits(spec, beside: pinned) {
            let names = runners.filter { $0.value.isPinned && $0.value.phase != .stopping }.keys.sorted().joined(separator: ", ")
            return .never("the pinned models \(names) hold \(shortfall(spec, beside: pinned)); unload one of them first")
        }
        // Room that will exist once runners already stopping are gone.
        if fits(spec, beside: usage { $0.phase != .stopping }) { return .later }
        let waiting = Set(waiters.map(\.spec.id))
        let idle = runners.filter { m, r in
            r.phase == .ready && r.leases.isEmpty && !r.isPinned && (!waiting.contains(m) || draining.contains(m))
        }.sorted { ($0.value.lastUsed, $0.key) < ($1.value.lastUsed, $1.key) }
        // Evict only if enough idle runners exist; if busy runners hold the room, stopping idle ones
        // would lose them for nothing: wait instead.
        var victims: [String] = []
        var left = usage { $0.phase != .stopping }
        for (model, runner) in idle where !fits(spec, beside: left) && relieves(runner.spec, for: spec, beside: left) {
            victims.append(model)
            left.remove(runner.spec)
        }
        guard fits(spec, beside: left) else { return .later }
        for model in victims {
            runners[model]!.phase = .stopping
            actions.append(.stop(model: model, reason: .evicted))
        }
        return .later
    }

    /// Preloads that fit without evicting anything, when no request waits for room; the resident
    /// model once nothing has happened for `residentIdle` seconds, evicting idle runners for it.
    mutating func startBackgroundLoads(now: Double, actions: inout [SchedulerAction]) {
        guard waiters.isEmpty else { return }
        var wanted = config.preload.filter { pendingPreload.contains($0.id) }
        let machineIdle = now - lastActivity >= config.residentIdle
            && runners.values.allSatisfy { $0.leases.isEmpty && $0.phase == .ready }
        if let resident = config.resident, runners[resident.id] == nil, pendingPreload.contains(resident.id) || machineIdle {
            wanted.insert(resident, at: 0)
        }
        for spec in wanted where runners[spec.id] == nil && backoffRejection(spec.id, now: now) == nil {
            let room: Room
            if spec.id == config.resident?.id {
                room = makeRoom(for: spec, draining: [], actions: &actions)
            } else {
                room = fits(spec, beside: usage { _ in true }) ? .now : .later
            }
            guard room == .now else { continue }
            runners[spec.id] = Runner(spec: spec, phase: .starting, lastUsed: now, idleSince: nil, keepAlive: nil, background: true)
            pendingPreload.remove(spec.id)
            actions.append(.start(spec))
        }
    }

    // MARK: Crashes

    func backoffRejection(_ model: String, now: Double) -> SchedulerError? {
        guard let f = failures[model], let until = f.backoffUntil, until > now else { return nil }
        return .failed(model: model, reason: "it crashed \(f.crashes.count) times within \(Int(Self.crashWindow)) s: \(f.reason)",
                       retryAfterSeconds: Int((until - now).rounded(.up)))
    }

    /// Counts a crash (backoff after three within a minute); a preloaded model is started again.
    mutating func recordCrash(_ model: String, reason: String, now: Double) {
        var f = failures[model] ?? Failures()
        f.crashes = f.crashes.filter { now - $0 < Self.crashWindow } + [now]
        f.reason = reason
        if f.crashes.count >= Self.crashesBeforeBackoff {
            f.backoffUntil = now + f.backoff
            f.backoff = min(f.backoff * 2, Self.maxBackoff)
        }
        failures[model] = f
        if config.preload.contains(where: { $0.id == model }) || config.resident?.id == model { pendingPreload.insert(model) }
    }
}
