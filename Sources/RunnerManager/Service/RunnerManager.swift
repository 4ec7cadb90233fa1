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
    }

    let context: ServiceContext
    let registry: RPCClient
    let loop: EventLoop
    private var scheduler: Scheduler
    private var snapshot = RegistrySnapshot(revision: "", defaultModel: nil, models: [])
    private var appConfig = AppConfig()
    private var processes: [String: RunnerProcess] = [:]
    private var pending: [RequestID: Pending] = [:]
    private var leases: [LeaseID: Lease] = [:]
    /// Leases by the connection holding them: when it closes they are released (`disconnected`).
    private var leasesByOwner: [RPCCaller: Set<LeaseID>] = [:]
    private var status: [String: Status] = [:]
    private var nextRequest: RequestID = 0
    /// When each model's current runner became ready (monotonic ns): a request that arrived before
    /// it waited for that load, and reports the wait as `loadDurationMs`.
    private var readyAt: [String: UInt64] = [:]
    /// The effective model (with a request's parameter overrides) behind each fingerprint.
    private var effective: [String: ResolvedModel] = [:]
    /// Specs by model id and overrides, so an acquire does not rebuild argv and hash it each time;
    /// cleared whenever the snapshot changes.
    private var specCache: [String: (ModelSpec, ResolvedModel)] = [:]
    private var detached = false
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

    // MARK: Configuration from the registry

    /// Fetches the snapshot and limits (at start, on `registry.changed`, on reconnect).
    func refresh() async {
        do {
            let snap = try await registry.call(RegistryRPC.Snapshot.self, Empty(), timeout: 10)
            let app = try await registry.call(RegistryRPC.AppConfigGet.self, Empty(), timeout: 10)
            snapshot = snap
            appConfig = app
            specCache = [:]
            scheduler.config = .init(maxLoaded: app.limits.maxLoadedModels, budgetBytes: Self.budget(app.limits.memoryBudget),
                                     queueLimit: app.limits.queueSize)
            apply(scheduler.tick(now: Self.now()))
        } catch {
            context.logger.warning("cannot read the model table from the registry: \(error)")
        }
    }

    /// `memory_budget` in bytes: a number, or a percentage of physical memory.
    static func budget(_ value: JSONValue) -> Int {
        let physical = Int(sysconf(Int32(_SC_PHYS_PAGES))) * Int(sysconf(Int32(_SC_PAGESIZE)))
        if let bytes = value.intValue, bytes > 0 { return bytes }
        if let text = value.stringValue, text.hasSuffix("%"), let pct = Double(text.dropLast()) {
            return Int(Double(physical) * pct / 100)
        }
        return physical * 8 / 10
    }

    func resolve(_ name: String) throws(RPCFault) -> ResolvedModel {
        if let m = snapshot.resolve(name) { return m }
        throw RPCFault.notFound("model \"\(name)\" is not defined (models: \(snapshot.models.map(\.id).joined(separator: ", ")))")
    }

    func spec(for model: ResolvedModel) -> ModelSpec {
        let ttl = Double(model.ttlSeconds ?? appConfig.limits.defaultTTLSeconds)
        return ModelSpec(id: model.id, fingerprint: RunnerArguments.fingerprint(model), memoryBytes: RunnerArguments.memoryEstimate(model),
                         concurrency: RunnerArguments.concurrency(model), ttlSeconds: ttl)
    }

    // MARK: Requests

    /// Waits for a runner of the model and grants a lease on it, owned by `owner` (the caller's
    /// connection). Cancellation is decided here, in the actor: a caller that gives up leaves the
    /// queue, and a grant that wins the race against the cancel is released before this returns.
    func acquire(_ request: AcquireRequest, owner: RPCCaller? = nil) async throws -> AcquireResult {
        let key = request.model + "\u{0}" + (request.parameters.map { JSONWriter.write($0, pretty: false) } ?? "")
        let spec: ModelSpec
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

    private func releaseLease(_ lease: LeaseID) {
        if let held = leases.removeValue(forKey: lease), let owner = held.owner {
            leasesByOwner[owner]?.remove(lease)
            if leasesByOwner[owner]?.isEmpty == true { leasesByOwner[owner] = nil }
        }
        apply(scheduler.release(lease, now: Self.now()))
    }

    private func cancel(_ id: RequestID) {
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

    /// Leases held right now (for tests and `runners.list`'s totals).
    var leaseCount: Int { leases.count }

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

    private func info(_ model: String) -> RunnerInfo {
        let runner = scheduler.runners[model]
        let process = processes[model]
        let s = status[model] ?? Status()
        let now = Self.now()
        return RunnerInfo(model: model, state: s.state, pid: process?.pid, endpoint: process?.endpoint,
                          memoryEstimateBytes: runner?.spec.memoryBytes ?? s.memoryBytes, rssBytes: process?.rssBytes,
                          activeLeases: runner?.leases.count ?? 0, queued: scheduler.queuedCount(model),
                          idleSeconds: runner?.idleSince.map { now - $0 }, expiresInSeconds: scheduler.expiry(model).map { max(0, $0 - now) },
                          loadDurationMs: s.loadDurationMs, detail: s.state == .loading ? process?.progressLine : s.detail,
                          adopted: process?.adopted ?? false,
                          contextLength: runner.flatMap { effective[$0.spec.fingerprint] }?.parameters["ctx_size"]?.intValue.flatMap { $0 > 0 ? $0 : nil })
    }

    // MARK: Applying decisions

    private func apply(_ actions: [SchedulerAction]) {
        for action in actions {
            switch action {
            case .start(let spec):
                setState(spec.id, .starting, memory: spec.memoryBytes)
                Task(executorPreference: loop) { await self.start(spec) }
            case .stop(let model, let reason):
                setState(model, .stopping, detail: reason.rawValue)
                Task(executorPreference: loop) { await self.stop(model, reason: reason) }
            case .grant(let request, let model, let lease):
                guard let p = pending.removeValue(forKey: request), let process = processes[model] else {
                    apply(scheduler.release(lease, now: Self.now()))
                    continue
                }
                leases[lease] = Lease(model: model, owner: p.owner)
                if let owner = p.owner { leasesByOwner[owner, default: []].insert(lease) }
                // The part of the wait that was the load: arrival until the runner became ready
                // (queueing behind busy leases afterwards is not load time).
                let ready = readyAt[model] ?? 0
                let waited = p.startedAt < ready ? Int((ready - p.startedAt) / 1_000_000) : 0
                p.continuation.resume(returning: AcquireResult(model: model, endpoint: process.endpoint, lease: lease, loadDurationMs: waited))
            case .reject(let request, let error):
                guard let p = pending.removeValue(forKey: request) else { continue }
                let code = if case .busy = error { RPCFault.busyCode } else { RPCFault.unavailableCode }
                var data: [String: String] = [:]
                switch error {
                case .busy(_, _, let retry): data["retryAfter"] = String(retry)
                case .failed(_, _, let retry?): data["retryAfter"] = String(retry)
                default: break
                }
                p.continuation.resume(throwing: RPCFault(code: code, message: error.description, data: data.isEmpty ? nil : data))
            case .failLeases(let model, let failed, let reason):
                for lease in failed {
                    if let owner = leases.removeValue(forKey: lease)?.owner { leasesByOwner[owner]?.remove(lease) }
                }
                context.logger.warning("runner for \(model) died under \(failed.count) request(s): \(reason)")
            }
        }
    }

    /// Notifies `runners.state` "loading" with the runner's latest progress line, once per new line.
    private func progress(_ model: String, process: RunnerProcess) {
        guard processes[model] === process, status[model]?.state == .loading,
              let line = process.progressLine, line != process.notifiedProgress else { return }
        process.notifiedProgress = line
        context.rpc.notify(RunnersRPC.StateChanged.self, RunnerState(model: model, state: .loading, pid: process.pid, detail: line))
    }

    private func setState(_ model: String, _ state: RunnerPhase, detail: String? = nil, memory: Int? = nil) {
        var s = status[model] ?? Status()
        s.state = state
        s.detail = detail
        if let memory { s.memoryBytes = memory }
        status[model] = s
        context.rpc.notify(RunnersRPC.StateChanged.self, RunnerState(model: model, state: state, pid: processes[model]?.pid, detail: detail))
    }

    private func start(_ spec: ModelSpec) async {
        guard let model = effective[spec.fingerprint] ?? (try? resolve(spec.id)) else {
            apply(scheduler.startFailed(spec.id, reason: "model is no longer defined", now: Self.now()))
            return
        }
        let startedAt = monotonicNanos()
        let process: RunnerProcess
        do {
            process = try RunnerProcess.spawn(model, logsDir: logsDir, loop: loop)
        } catch {
            setState(spec.id, .failed, detail: "\(error)")
            context.logger.error("cannot start \(spec.id): \(error)")
            apply(scheduler.startFailed(spec.id, reason: "\(error)", now: Self.now()))
            return
        }
        processes[spec.id] = process
        saveRecords()
        context.logger.info("starting runner", ("model", spec.id), ("pid", process.pid), ("port", process.port))
        setState(spec.id, .loading)
        watchExit(process)
        // `runners.state` "loading" again with each new progress line from the runner's log.
        Task(executorPreference: loop) { [loop] in
            while process.loading {
                try? await loop.sleep(seconds: 0.25)
                if process.loading { await self.progress(spec.id, process: process) }
            }
        }
        do {
            try await process.waitReady(stallTimeout: stallTimeout, loop: loop)
        } catch {
            // Forgotten before `loading` drops, so the exit watcher (`exited`) leaves this failure to us:
            // otherwise it could report the exit first, without the "while loading" account and log lines.
            if processes[spec.id] === process { processes[spec.id] = nil }
            process.loading = false
            setState(spec.id, .failed, detail: "\(error)")
            context.logger.error("runner for \(spec.id) failed to load: \(error)")
            await process.stop(grace: 2, loop: loop)
            saveRecords()
            apply(scheduler.startFailed(spec.id, reason: "\(error)", now: Self.now()))
            return
        }
        progress(spec.id, process: process)  // a fast load still reports its last progress line
        process.loading = false
        readyAt[spec.id] = monotonicNanos()
        let ms = Int((monotonicNanos() - startedAt) / 1_000_000)
        status[spec.id]?.loadDurationMs = ms
        setState(spec.id, .ready)
        context.logger.info("runner ready", ("model", spec.id), ("load_ms", ms))
        apply(scheduler.started(spec.id, now: Self.now()))
    }

    private func watchExit(_ process: RunnerProcess) {
        Task(executorPreference: loop) {
            let status = await process.waitExit(loop: self.loop)
            await self.exited(process, status: status)
        }
    }

    private func exited(_ process: RunnerProcess, status: ExitStatus?) {
        guard processes[process.model] === process else { return }
        if process.loading { return }  // waitReady reports it
        processes[process.model] = nil
        saveRecords()
        let reason = status.map { "the runner \($0)" } ?? "the adopted runner exited"
        let wasStopping = scheduler.runners[process.model]?.phase == .stopping
        process.log.poll()
        if wasStopping {
            setState(process.model, .stopped)
        } else {
            setState(process.model, .failed, detail: reason + RunnerError.format(process.log.tail(8)))
            context.logger.error("runner for \(process.model) crashed: \(reason)")
        }
        apply(scheduler.exited(process.model, reason: reason + RunnerError.format(process.log.tail(8)), now: Self.now()))
    }

    private func stop(_ model: String, reason: StopReason) async {
        guard let process = processes[model] else {
            apply(scheduler.exited(model, reason: "stopped", now: Self.now()))
            return
        }
        context.logger.info("stopping runner", ("model", model), ("reason", reason.rawValue), ("pid", process.pid))
        await process.stop(grace: Double(appConfig.limits.unloadTimeoutSeconds), loop: loop)
        // For an adopted runner there is no reaper: report the exit here.
        if process.adopted { exited(process, status: nil) }
    }

    /// Called every second: idle runners past their TTL unload.
    func tick() {
        apply(scheduler.tick(now: Self.now()))
        for p in processes.values where p.loading == false { p.log.poll() }
    }

    // MARK: Adoption and shutdown

    /// The queue `runners.json` is written on: in order, off the event loop (each write fsyncs twice).
    private let recordsQueue = BlockingPool.shared.queue(for: "runners.json")

    private func saveRecords() {
        let records = processes.values.map(\.record).sorted { $0.model < $1.model }
        let (paths, logger) = (context.paths, context.logger)
        recordsQueue.submit {
            do {
                try RunnerRecord.save(records, paths)
            } catch {
                logger.error("cannot write runners.json: \(error)")
            }
        }
    }

    /// Waits until every `runners.json` write asked for so far is on disk (before the process exits,
    /// so the next runner-manager adopts what this one ran).
    func flushRecords() async {
        await recordsQueue.run {}
    }

    /// Adopts the runners a previous manager recorded, if each is the same process (pid and start
    /// time), still serves its model with the same arguments, and answers health. Others are stopped.
    func adopt() async {
        for record in RunnerRecord.load(context.paths) {
            guard record.process.isAlive else { continue }  // gone, or the pid now belongs to someone else
            let current = try? resolve(record.model)
            guard let model = current, RunnerArguments.fingerprint(model) == record.fingerprint else {
                context.logger.info("stopping a stray runner", ("model", record.model), ("pid", record.process.pid))
                await record.process.terminate(grace: Double(appConfig.limits.unloadTimeoutSeconds), loop: loop)
                continue
            }
            let process = RunnerProcess.adopt(record, kind: model.runtimeKind, loop: loop)
            guard await process.isHealthy(timeout: 2) else {
                context.logger.info("stopping an unhealthy stray runner", ("model", record.model), ("pid", record.process.pid))
                await record.process.terminate(grace: 2, loop: loop)
                continue
            }
            processes[model.id] = process
            let s = spec(for: model)
            scheduler.adopt(s, now: Self.now())
            status[model.id] = Status(state: .ready, detail: "adopted", loadDurationMs: 0, memoryBytes: s.memoryBytes)
            watchExit(process)
            context.logger.info("adopted runner", ("model", model.id), ("pid", process.pid), ("port", process.port))
        }
        saveRecords()
    }

    /// Stops every runner (unless detached for an adopting restart) and fails what still waits.
    func shutdown() async {
        for (_, p) in pending { p.continuation.resume(throwing: RPCFault(code: RPCFault.unavailableCode, message: "runner-manager is stopping")) }
        pending = [:]
        if detached {
            context.logger.info("leaving \(processes.count) runner(s) running for the next runner-manager")
            return
        }
        let all = Array(processes.values)
        processes = [:]
        await withTaskGroup(of: Void.self) { group in
            for p in all {
                group.addTask { await p.stop(grace: Double(await self.appConfig.limits.unloadTimeoutSeconds), loop: self.loop) }
            }
        }
        saveRecords()
    }
}
