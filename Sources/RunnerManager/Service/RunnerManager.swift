import Glibc
import Shared

/// The runner manager: turns the scheduler's decisions into processes, waiters and leases. An actor;
/// every event (acquire, release, a load finishing, a process exiting, the clock) goes through the
/// pure `Scheduler` and its actions are applied here, so no unload can race a request.
actor RunnerManager {
    struct Pending {
        let model: String
        let startedAt: UInt64
        /// The control connection that asked; the lease it gets belongs to that connection.
        let owner: RPCCaller?
        let continuation: CheckedContinuation<AcquireResult, any Error>
    }

    /// A granted lease: the runner it is on and the connection that holds it.
    struct Lease {
        let model: String
        let owner: RPCCaller?
    }

    struct Status {
        var state = RunnerPhase.stopped
        var detail: String?
        var loadDurationMs: Int?
        var memoryBytes = 0
        var slots = SlotCacheCounts()
        /// What the runner reported allocating once ready (`BufferSizes`).
        var measured: MeasuredMemory?
    }

    let context: ServiceContext
    let registry: RPCClient
    let loop: EventLoop
    /// The devices and their memory, sampled off the loop (`Hardware/Inventory`).
    let inventory = Inventory(readers: Inventory.readers(for: AppConfig.Hardware()))
    var scheduler: Scheduler
    var snapshot = RegistrySnapshot(revision: "", defaultModel: nil, models: [])
    var appConfig = AppConfig()
    var processes: [String: RunnerProcess] = [:]
    var pending: [RequestID: Pending] = [:]
    var leases: [LeaseID: Lease] = [:]
    /// Leases by the connection holding them: when it closes they are released (`disconnected`).
    var leasesByOwner: [RPCCaller: Set<LeaseID>] = [:]
    var status: [String: Status] = [:]
    var nextRequest: RequestID = 0
    /// When each model's current runner became ready (monotonic ns): a request that arrived before
    /// it waited for that load, and reports the wait as `loadDurationMs`.
    var readyAt: [String: UInt64] = [:]
    /// The effective model (with a request's parameter overrides) behind each fingerprint.
    var effective: [String: ResolvedModel] = [:]
    /// Specs by model id and overrides, so an acquire does not rebuild argv and hash it each time;
    /// cleared whenever the snapshot changes.
    var specCache: [String: (ModelSpec, ResolvedModel)] = [:]
    var detached = false
    /// Where runners listen: loopback, or this host's address with a key each (`runner_host`, read
    /// once at start: a change needs a restart of runner-manager).
    var network = RunnerNetwork.loopback
    /// This host's name for gateways (`runner_host.name`, else the machine's host name).
    var hostName = "local"
    /// The loop timer that wakes the scheduler when a waiting request's patience runs out, and when.
    var decisionTimer: (id: UInt64, at: Double)?
    /// Seconds without load progress before a load is abandoned.
    let stallTimeout: Double

    init(context: ServiceContext, registry: RPCClient, stallTimeout: Double = 120) {
        self.context = context
        self.registry = registry
        self.loop = context.loop
        self.stallTimeout = stallTimeout
        scheduler = Scheduler(config: .init(maxLoaded: 2, budgetBytes: Int.max, queueLimit: 64))
    }

    static func now() -> Double { Double(monotonicNanos()) / 1e9 }

    var logsDir: String { context.paths.logsDir + "/runners" }

    /// Where conversations are kept across unloads, when `limits.slot_cache_bytes` allows it.
    var slotCache: SlotCache? {
        let limit = appConfig.limits.slotCacheBytes
        return limit > 0 ? SlotCache(directory: context.paths.stateDir + "/slots", limitBytes: limit) : nil
    }

    // MARK: Configuration from the registry

    /// Fetches the snapshot and limits (at start, on `registry.changed`, on reconnect).
    func refresh() async {
        do {
            let snap = try await registry.call(RegistryRPC.Snapshot.self, Empty(), timeout: 10)
            let app = try await registry.call(RegistryRPC.AppConfigGet.self, Empty(), timeout: 10)
            snapshot = snap
            let hardwareChanged = app.hardware != appConfig.hardware
            if hardwareChanged { inventory.configure(app.hardware) }
            appConfig = app
            // The devices before the budgets and placements taken from them: sampled at once when
            // their sources changed, or before the first sample.
            if hardwareChanged || inventory.current.sampledAt == 0 { await inventory.sample() }
            specCache = [:]
            apply(scheduler.configure(schedulerConfig(), now: Self.now()))
            // A model gone from the table (deleted, renamed) has its runner unloaded, once its leases end.
            let defined = Set(snap.models.map(\.id))
            for model in scheduler.runners.keys.sorted() where !defined.contains(model) { apply(scheduler.unload(model, now: Self.now())) }
        } catch {
            context.logger.warning("cannot read the model table from the registry: \(error)")
        }
    }

    /// The scheduler's limits and resident models from the app config and the model table in force.
    func schedulerConfig() -> Scheduler.Config {
        let limits = appConfig.limits
        let resident = appConfig.residentModel.flatMap { snapshot.resolve($0) }.map { spec(for: $0) }
        let preload = snapshot.models.filter { $0.preload && $0.state != .missing }.sorted { $0.id < $1.id }.map { spec(for: $0) }
        return Scheduler.Config(maxLoaded: limits.maxLoadedModels, budgetBytes: ModelMemory.budget(limits.memoryBudget),
                                deviceBudgets: Self.gpuBudgets(limits, gpus: inventory.current.gpus), queueLimit: limits.queueSize,
                                policy: limits.swapPolicy, maxWait: limits.maxWaitSeconds,
                                preload: preload, resident: resident, residentIdle: limits.residentIdleSeconds,
                                stopAbandoned: limits.stopAbandonedLoads)
    }

    /// `limits.memory_budget` on each GPU (bytes, or a share of its total), less `gpu_overhead_bytes`.
    static func gpuBudgets(_ limits: AppConfig.Limits, gpus: [Device]) -> [String: Int] {
        var out: [String: Int] = [:]
        for gpu in gpus {
            var budget = gpu.totalBytes * 8 / 10
            if let bytes = limits.memoryBudget.intValue, bytes > 0 { budget = min(bytes, gpu.totalBytes) }
            if let text = limits.memoryBudget.stringValue, text.hasSuffix("%"), let pct = Double(text.dropLast()) {
                budget = Int(Double(gpu.totalBytes) * pct / 100)
            }
            out[gpu.id] = max(0, budget - limits.gpuOverheadBytes)
        }
        return out
    }

    /// The GPUs or their totals changed since the scheduler was configured (the first sample, a GPU
    /// that appeared or fell off the bus): its budgets follow.
    func hardwareSampled() {
        let budgets = Self.gpuBudgets(appConfig.limits, gpus: inventory.current.gpus)
        guard budgets != scheduler.config.deviceBudgets else { return }
        specCache = [:]
        apply(scheduler.configure(schedulerConfig(), now: Self.now()))
    }

    /// Where a runner of `model` goes now, beside what this manager's own loads hold.
    func place(_ model: ResolvedModel, overrides: JSONObject = JSONObject(), forceCPU: Bool = false) throws(Placement.Failure) -> Placement {
        var held: [String: Int] = [:]
        // Loads under way: the last sample may predate their allocations.
        for (id, r) in scheduler.runners where id != model.id && r.phase == .starting {
            for (device, bytes) in r.spec.memory { held[device, default: 0] += bytes }
        }
        return try Placement.place(model, devices: inventory.current.devices, held: held, gpuReserve: appConfig.limits.gpuOverheadBytes,
                                   overrides: overrides, forceCPU: forceCPU)
    }

    /// `spec` placed afresh (a runner of it is not running): its devices and their estimate.
    func placed(_ spec: ModelSpec, _ model: ResolvedModel) throws(RPCFault) -> ModelSpec {
        var out = spec
        do {
            let placement = try place(model)
            out.placement = placement
            out.memory = placement.memory
        } catch {
            throw RPCFault.invalidParams(error.description)
        }
        return out
    }

    func resolve(_ name: String) throws(RPCFault) -> ResolvedModel {
        if let m = snapshot.resolve(name) { return m }
        throw RPCFault.notFound("model \"\(name)\" is not defined (models: \(snapshot.models.map(\.id).joined(separator: ", ")))")
    }

    func spec(for model: ResolvedModel) -> ModelSpec {
        let ttl = Double(model.ttlSeconds ?? appConfig.limits.defaultTTLSeconds)
        let fingerprint = RunnerArguments.fingerprint(model)
        effective[fingerprint] = model  // what `start` will run for this spec
        let base = ModelSpec(id: model.id, fingerprint: fingerprint, memoryBytes: RunnerArguments.memoryEstimate(model),
                             concurrency: RunnerArguments.concurrency(model), ttlSeconds: ttl, pinned: model.pinned)
        do { return try placed(base, model) } catch {
            context.logger.warning("model \(model.id): \(error.message)")
            return base
        }
    }

    // MARK: Requests

    /// Waits for a runner of the model and grants a lease on it, owned by `owner` (the caller's
    /// connection). Cancellation is decided here, in the actor: a caller that gives up leaves the
    /// queue, and a grant that wins the race against the cancel is released before this returns.
    func acquire(_ request: AcquireRequest, owner: RPCCaller? = nil) async throws -> AcquireResult {
        if let seen = request.revision, seen != snapshot.revision, snapshot.resolve(request.model) == nil { await refresh() }
        let key = request.model + "\u{0}" + (request.parameters.map { JSONWriter.write($0, pretty: false) } ?? "")
        var spec: ModelSpec
        if let (cached, model) = specCache[key] {
            spec = cached
            effective[spec.fingerprint] = model
        } else {
            var model = try resolve(request.model)
            if model.state == .missing {
                throw RPCFault(code: RPCFault.unavailableCode, message: "model \(model.id): \(model.error ?? "its file is missing"): run scripts/bootstrap.sh, or fix model_path in models_config.json")
            }
            if let overrides = request.parameters?.objectValue, !overrides.isEmpty {
                var merged = model.parameters.objectValue ?? JSONObject()
                for (k, v) in overrides.entries { merged[k] = v }
                model.parameters = .object(merged)
            }
            spec = self.spec(for: model)
            specCache[key] = (spec, model)
            effective[spec.fingerprint] = model
        }
        // A runner of it already runs (or loads) where it was placed; otherwise it is placed now, on
        // the devices as they are now.
        if let running = scheduler.runners[spec.id], running.spec.fingerprint == spec.fingerprint {
            spec = running.spec
        } else if let model = effective[spec.fingerprint] {
            spec = try placed(spec, model)
        }
        nextRequest += 1
        let id = nextRequest
        let grant = try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<AcquireResult, any Error>) in
                pending[id] = Pending(model: spec.id, startedAt: monotonicNanos(), owner: owner, continuation: continuation)
                apply(scheduler.acquire(id, spec: spec, keepAlive: request.keepAlive, now: Self.now()))
            }
        } onCancel: {
            Task(executorPreference: loop) { await self.cancel(id) }
        }
        // The grant came, but the caller gave up meanwhile (its connection closed, `rpc.cancel`):
        // nobody will release this lease, so it goes back now.
        if Task.isCancelled {
            releaseLease(grant.lease)
            throw CancellationError()
        }
        return grant
    }

    /// The connection `owner` closed (its gateway stopped, crashed or was killed): every lease it held
    /// is released, so the runners' idle countdowns start.
    func disconnected(_ owner: RPCCaller) {
        guard let owned = leasesByOwner.removeValue(forKey: owner), !owned.isEmpty else { return }
        context.logger.info("releasing the leases of a closed connection", ("leases", owned.count), ("caller", owner.description))
        for lease in owned.sorted() { releaseLease(lease) }
    }

    func releaseLease(_ lease: LeaseID) {
        if let held = leases.removeValue(forKey: lease), let owner = held.owner {
            leasesByOwner[owner]?.remove(lease)
            if leasesByOwner[owner]?.isEmpty == true { leasesByOwner[owner] = nil }
        }
        apply(scheduler.release(lease, now: Self.now()))
    }

    func cancel(_ id: RequestID) {
        guard let p = pending.removeValue(forKey: id) else { return }
        p.continuation.resume(throwing: CancellationError())
        apply(scheduler.cancel(id, now: Self.now()))
    }

    /// Releases a lease for the connection that holds it. A lease held by another connection is left
    /// alone: lease ids start again with each runner-manager, so a gateway that outlived a restart
    /// could otherwise release, by number, a new lease that someone else holds.
    func release(_ request: ReleaseRequest, caller: RPCCaller? = nil) {
        guard let held = leases[request.lease] else { return }
        if let owner = held.owner, let caller, owner != caller { return }
        releaseLease(request.lease)
    }


    /// Loads a model and returns once it is ready, holding no lease.
    func load(_ request: AcquireRequest) async throws -> RunnerInfo {
        let grant = try await acquire(request)
        releaseLease(grant.lease)
        return info(grant.model)
    }

    func unload(_ name: String) throws(RPCFault) {
        let model = try resolve(name)
        apply(scheduler.unload(model.id, now: Self.now()))
    }

    func unloadAll() {
        for model in scheduler.runners.keys.sorted() { apply(scheduler.unload(model, now: Self.now())) }
    }

    func detach() { detached = true }

    func logs(_ request: LogsRequest) async throws(RPCFault) -> [String] {
        let model = try resolve(request.model)
        let count = min(max(request.tail ?? 100, 1), 500)
        if let p = processes[model.id] {
            p.log.poll()
            return p.log.tail(count)
        }
        let path = "\(logsDir)/\(RunnerProcess.safeName(model.id)).log"
        return await BlockingPool.shared.run { LogFile.tail(path, lines: count) }
    }

    func list() -> [RunnerInfo] {
        Set(scheduler.runners.keys).union(status.keys).sorted().map(info)
    }

    /// Takes `runner_host` (once, at start): where runners listen and this host's name.
    func configureNetwork(_ config: AppConfig.RunnerHost?) {
        network = RunnerNetwork.of(config, runDir: context.paths.runDir)
        hostName = config?.name ?? Self.machineName() ?? "local"
    }

    static func machineName() -> String? {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count) == 0 else { return nil }
        let name = String(cString: buffer)
        return name.isEmpty ? nil : name
    }

    /// `runners.host`: what a gateway places by (its heartbeat). Audio models are left out when the
    /// host serves remote gateways: their runners stay on loopback.
    func hostInfo() -> HostInfo {
        let remote = network.keyDirectory != nil
        let models = snapshot.models.filter { $0.state == .available && (!remote || network.isRemote($0.runtimeKind)) }.map(\.id)
        return HostInfo(name: hostName, revision: snapshot.revision, models: models, hardware: inventory.current, runners: list(), remote: remote)
    }

    func info(_ model: String) -> RunnerInfo {
        let runner = scheduler.runners[model]
        let process = processes[model]
        let s = status[model] ?? Status()
        let now = Self.now()
        var info = RunnerInfo(model: model, state: s.state, pid: process?.pid, endpoint: process?.endpoint,
                          memoryEstimateBytes: s.memoryBytes > 0 ? s.memoryBytes : runner?.spec.memoryBytes ?? 0, rssBytes: process?.rssBytes,
                          activeLeases: runner?.leases.count ?? 0, queued: scheduler.queuedCount(model),
                          idleSeconds: runner?.idleSince.map { now - $0 }, expiresInSeconds: scheduler.expiry(model).map { max(0, $0 - now) },
                          loadDurationMs: s.loadDurationMs, detail: s.state == .loading ? process?.progressLine ?? s.detail : s.detail,
                          adopted: process?.adopted ?? false, 
                          contextLength: runner.flatMap { $0.spec.placement?.overrides["ctx_size"] ?? effective[$0.spec.fingerprint]?.parameters["ctx_size"] }?
                            .intValue.flatMap { $0 > 0 ? $0 : nil },
                          slotCache: s.slots == SlotCacheCounts() ? nil : s.slots,
                          measuredMemory: runner == nil ? nil : s.measured)
        info.devices = runner.map { $0.spec.placement?.gpus ?? [] }
        info.memoryByDevice = runner?.spec.memory
        return info
    }
}
