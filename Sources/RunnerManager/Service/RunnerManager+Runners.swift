import Glibc
import Shared

/// Turning the scheduler's actions into processes, grants and state notifications.
extension RunnerManager {
    // MARK: Applying decisions

    func apply(_ actions: [SchedulerAction]) {
        defer { armDecisionTimer() }
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
                p.continuation.resume(returning: AcquireResult(model: model, endpoint: process.endpoint, lease: lease, loadDurationMs: waited,
                                                                       apiKey: process.apiKey))
            case .reject(let request, let error):
                guard let p = pending.removeValue(forKey: request) else { continue }
                let code = if case .busy = error { RPCFault.busyCode } else { RPCFault.unavailableCode }
                if case .wontFit(let model, let reason) = error { context.logger.warning("cannot load \(model): \(reason)") }
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
    func progress(_ model: String, process: RunnerProcess) {
        guard processes[model] === process, status[model]?.state == .loading,
              let line = process.progressLine, line != process.notifiedProgress else { return }
        process.notifiedProgress = line
        context.rpc.notify(RunnersRPC.StateChanged.self, RunnerState(model: model, state: .loading, pid: process.pid, detail: line))
    }

    func setState(_ model: String, _ state: RunnerPhase, detail: String? = nil, memory: Int? = nil, step: String? = nil) {
        var s = status[model] ?? Status()
        s.state = state
        s.detail = detail
        if let memory { s.memoryBytes = memory }
        status[model] = s
        let contextLength = state == .ready ? info(model).contextLength : nil
        context.rpc.notify(RunnersRPC.StateChanged.self, RunnerState(model: model, state: state, pid: processes[model]?.pid, detail: detail,
                                                                     contextLength: contextLength, step: step))
    }

    /// Wakes the scheduler exactly when the oldest waiting request's patience runs out (the 1 s tick
    /// would add up to a second to the wait bound).
    func armDecisionTimer() {
        let next = scheduler.nextDecision(now: Self.now())
        if let timer = decisionTimer, timer.at == next { return }
        if let timer = decisionTimer { loop.cancelTimer(timer.id) }
        decisionTimer = nil
        guard let next else { return }
        let at = UInt64(max(0, next) * 1e9) + 1_000_000
        let id = loop.schedule(at: at) { [weak self] in
            guard let self else { return }
            Task(executorPreference: self.loop) { await self.decisionDue() }
        }
        decisionTimer = (id, next)
    }

    func decisionDue() {
        decisionTimer = nil
        apply(scheduler.tick(now: Self.now()))
    }

    /// How one launch of a runner ended.
    enum Launch {
        case ready
        /// Stopped on purpose while loading (abandoned, unloaded), or no longer wanted: not a failure.
        case gone
        /// It failed to load: why, and its last log lines (what the out-of-memory ladder reads).
        case failed(String, log: [String])
    }

    /// Starts the runner the scheduler asked for; a load that runs out of memory walks the ladder
    /// (`LoadLadder`): each step is logged, shown as the load's progress, and tried in turn, and the
    /// waiting requests get the ladder's precise error when no step is left.
    func start(_ first: ModelSpec) async {
        // The scheduler may have changed its mind before this task ran (an abandoned load stopped
        // before it was spawned): start only the runner it still waits for.
        guard let wanted = scheduler.runners[first.id], wanted.phase == .starting, wanted.spec == first else { return }
        guard let model = effective[first.fingerprint] ?? (try? resolve(first.id)) else {
            apply(scheduler.startFailed(first.id, reason: "model is no longer defined", now: Self.now()))
            return
        }
        var spec = first
        var ladder = LoadLadder(model: model)
        while true {
            let outcome = await launch(spec, model: model)
            guard case .failed(let reason, let lines) = outcome else { return }
            let failure = LoadFailure.classify(lines)
            var final = reason
            if case .outOfMemory = failure, scheduler.runners[spec.id]?.phase == .starting {
                // Figures from after the failed runner exited.
                await inventory.sample()
                let placement = spec.placement ?? (try? place(model)) ?? Placement(gpus: [], kind: .cpu, overrides: JSONObject(),
                                                                                   estimate: MemoryEstimate.of(metadata: model.metadata, parameters: model.parameters, gpus: []))
                if let step = ladder.next(after: failure, placement: placement, idleOn: { self.hasIdleRunners(on: $0, except: spec.id) },
                                          room: { self.room(on: $0, except: spec.id) }) {
                    let line = "out of memory on \(LoadLadder.Step.name(ladder.lastDevice)) (it needs about \(ModelMemory.gigabytes(ladder.lastNeeded)) there): trying \(step)"
                    context.logger.warning("loading \(spec.id): \(line)")
                    setState(spec.id, .loading, detail: line, step: line)
                    switch step {
                    case .evictIdle(let device):
                        let (victims, actions) = scheduler.evictIdle(on: device, except: spec.id)
                        apply(actions)
                        await waitStopped(victims)
                    default:
                        do {
                            let next = try place(model, overrides: ladder.overrides(for: step, after: placement), forceCPU: step == .cpuFallback)
                            spec.placement = next
                            spec.memory = next.memory
                            scheduler.retry(spec.id, spec: spec)
                        } catch {
                            final = ladder.error(cause: "\(error)")
                            break
                        }
                    }
                    if scheduler.runners[spec.id]?.phase == .stopping {
                        // Unloaded or abandoned between two tries.
                        setState(spec.id, .stopped)
                        apply(scheduler.exited(spec.id, reason: "stopped while loading", now: Self.now()))
                        return
                    }
                    if final == reason { continue }
                } else {
                    final = ladder.error(cause: "")
                }
            }
            setState(spec.id, .failed, detail: final)
            context.logger.error("runner for \(spec.id) failed to load: \(final)")
            apply(scheduler.startFailed(spec.id, reason: final, now: Self.now()))
            return
        }
    }

    /// Whether idle runners that could be stopped use `device`.
    func hasIdleRunners(on device: String, except model: String) -> Bool {
        scheduler.runners.contains { m, r in m != model && r.phase == .ready && r.leases.isEmpty && !r.isPinned && (r.spec.memory[device] ?? 0) > 0 }
    }

    /// What `device` has for one more runner now: its free memory, within its budget less what the
    /// other runners hold there.
    func room(on device: String, except model: String) -> Int? {
        let others = scheduler.runners.filter { $0.key != model }.values.reduce(0) { $0 + ($1.spec.memory[device] ?? 0) }
        let budget = device == Placement.cpu ? scheduler.config.budgetBytes : scheduler.config.deviceBudgets[device] ?? Int.max
        let free = inventory.current.devices.first { $0.id == device }?.freeBytes
        return [free, budget == Int.max ? nil : budget - others].compactMap { $0 }.min()
    }

    /// Waits until the runners of `models` have exited (the ladder's eviction), for at most the unload timeout and 5 s.
    func waitStopped(_ models: [String]) async {
        let until = monotonicNanos() + UInt64(appConfig.limits.unloadTimeoutSeconds + 5) * 1_000_000_000
        while models.contains(where: { processes[$0] != nil }) && monotonicNanos() < until {
            try? await loop.sleep(seconds: 0.1)
        }
    }

    /// One launch: spawn, wait for ready, then measure and report; a failure is stopped and returned.
    func launch(_ spec: ModelSpec, model configured: ResolvedModel) async -> Launch {
        var model = configured
        if let overrides = spec.placement?.overrides, !overrides.isEmpty {
            var merged = model.parameters.objectValue ?? JSONObject()
            for (k, v) in overrides.entries { merged[k] = v }
            model.parameters = .object(merged)
        }
        let startedAt = monotonicNanos()
        let process: RunnerProcess
        let slots = slotCache.flatMap { SlotCache.unsupported(model) == nil ? $0 : nil }
        if let slots { try? makeDirectories(slots.directory, mode: 0o700) }  // llama-server requires it to exist
        do {
            process = try RunnerProcess.spawn(model, logsDir: logsDir, extraArguments: slots?.arguments(configured) ?? [],
                                              environment: spec.placement?.environment ?? [:], fingerprint: spec.fingerprint, network: network, loop: loop)
        } catch {
            context.logger.error("cannot start \(spec.id): \(error)")
            return .failed("\(error)", log: [])
        }
        processes[spec.id] = process
        status[spec.id]?.measured = nil
        saveRecords()
        context.logger.info("starting runner", ("model", spec.id), ("pid", process.pid), ("port", process.port),
                            ("devices", spec.placement.map { $0.gpus.isEmpty ? Placement.cpu : $0.gpus.joined(separator: ",") } ?? Placement.cpu))
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
            process.log.poll()
            let lines = process.log.tail(60)
            if scheduler.runners[spec.id]?.phase == .stopping {
                await process.stop(grace: 2, loop: loop)
                saveRecords()
                setState(spec.id, .stopped)
                apply(scheduler.exited(spec.id, reason: "stopped while loading", now: Self.now()))
                return .gone
            }
            await process.stop(grace: 2, loop: loop)
            saveRecords()
            return .failed("\(error)", log: lines)
        }
        progress(spec.id, process: process)  // a fast load still reports its last progress line
        process.loading = false
        process.log.poll()
        let measured = BufferSizes.parse(process.log.tail(500))
        status[spec.id]?.measured = measured
        if let measured { apply(scheduler.measured(spec.id, memory: measuredMemory(measured, spec: spec, process: process), now: Self.now())) }
        // Conversations saved at its last unload go back before the first request is let through.
        if let slots { await restoreSlots(slots, model: configured, process: process) }
        readyAt[spec.id] = monotonicNanos()
        let ms = Int((monotonicNanos() - startedAt) / 1_000_000)
        status[spec.id]?.loadDurationMs = ms
        setState(spec.id, .ready)
        context.logger.info("runner ready", ("model", spec.id), ("load_ms", ms))
        apply(scheduler.started(spec.id, now: Self.now()))
        return .ready
    }

    /// What a ready runner holds on each device, from then on what the scheduler counts: its own
    /// buffer sizes by device, or the process's usage where the device reports more (the CPU's RSS,
    /// a GPU's per-process figure from NVML / nvidia-smi).
    func measuredMemory(_ measured: MeasuredMemory, spec: ModelSpec, process: RunnerProcess) -> [String: Int] {
        let placement = spec.placement ?? Placement(gpus: [], kind: .cpu, overrides: JSONObject(),
                                                    estimate: MemoryEstimate(devices: [:], gpuLayers: 0, layers: 0, contextSize: 0))
        var out = placement.measuredByDevice(measured)
        out[Placement.cpu] = max(out[Placement.cpu] ?? 0, process.rssBytes ?? 0)
        for (device, bytes) in inventory.processMemory[process.pid] ?? [:] { out[device] = max(out[device] ?? 0, bytes) }
        return out
    }

    func watchExit(_ process: RunnerProcess) {
        Task(executorPreference: loop) {
            let status = await process.waitExit(loop: self.loop)
            await self.exited(process, status: status)
        }
    }

    func exited(_ process: RunnerProcess, status: ExitStatus?) {
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

    func stop(_ model: String, reason: StopReason) async {
        guard let process = processes[model] else {
            apply(scheduler.exited(model, reason: "stopped", now: Self.now()))
            return
        }
        context.logger.info("stopping runner", ("model", model), ("reason", reason.rawValue), ("pid", process.pid))
        if [.evicted, .idle, .requested].contains(reason), !process.loading, let cache = slotCache,
           let resolved = effective[process.fingerprint], SlotCache.unsupported(resolved) == nil {
            await saveSlots(cache, model: resolved, process: process)
        }
        await process.stop(grace: Double(appConfig.limits.unloadTimeoutSeconds), loop: loop)
        // For an adopted runner there is no reaper: report the exit here.
        if process.adopted { exited(process, status: nil) }
    }

    /// Called every second: idle runners past their TTL unload.
    func tick() {
        apply(scheduler.tick(now: Self.now()))
        for p in processes.values where p.loading == false { p.log.poll() }
    }

    // MARK: Conversations kept across unloads

    /// Saves the runner's slots; a failure is logged and counted, never an obstacle to the stop.
    func saveSlots(_ cache: SlotCache, model: ResolvedModel, process: RunnerProcess) async {
        let started = monotonicNanos()
        let outcome = await cache.save(model.id, key: SlotCache.key(model, fingerprint: process.fingerprint), runner: process.health)
        account(outcome, restored: false, model: model.id, since: started)
    }

    /// Restores the slots saved for this model and these load arguments; a file that does not restore
    /// is logged, counted and deleted, and the load goes on.
    func restoreSlots(_ cache: SlotCache, model: ResolvedModel, process: RunnerProcess) async {
        let started = monotonicNanos()
        let outcome = await cache.restore(model.id, key: SlotCache.key(model, fingerprint: process.fingerprint), runner: process.health)
        account(outcome, restored: true, model: model.id, since: started)
    }

    /// Counts a save or restore in the model's status (`runners.list`, Prometheus) and logs it.
    func account(_ outcome: SlotCache.Outcome, restored: Bool, model: String, since: UInt64) {
        var counts = status[model, default: Status()].slots
        if restored {
            counts.restores += outcome.slots
            counts.restoredTokens += outcome.tokens
            counts.restoreFailures += outcome.failures.count
        } else {
            counts.saves += outcome.slots
            counts.savedTokens += outcome.tokens
            counts.saveFailures += outcome.failures.count
        }
        status[model, default: Status()].slots = counts
        let verb = restored ? "restored" : "saved"
        if outcome.slots > 0 {
            context.logger.info("slots \(verb)", ("model", model), ("slots", outcome.slots), ("tokens", outcome.tokens),
                                ("ms", Int((monotonicNanos() - since) / 1_000_000)))
        }
        for failure in outcome.failures {
            context.logger.warning(restored ? "slot restore failed for \(model), ignored: \(failure)" : "slot save failed for \(model): \(failure)")
        }
    }
}
