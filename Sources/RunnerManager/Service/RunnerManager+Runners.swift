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
                p.continuation.resume(returning: AcquireResult(model: model, endpoint: process.endpoint, lease: lease, loadDurationMs: waited))
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

    func setState(_ model: String, _ state: RunnerPhase, detail: String? = nil, memory: Int? = nil) {
        var s = status[model] ?? Status()
        s.state = state
        s.detail = detail
        if let memory { s.memoryBytes = memory }
        status[model] = s
        let contextLength = state == .ready ? info(model).contextLength : nil
        context.rpc.notify(RunnersRPC.StateChanged.self, RunnerState(model: model, state: state, pid: processes[model]?.pid, detail: detail,
                                                                     contextLength: contextLength))
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

    func start(_ spec: ModelSpec) async {
        // The scheduler may have changed its mind before this task ran (an abandoned load stopped
        // before it was spawned): start only the runner it still waits for.
        guard let wanted = scheduler.runners[spec.id], wanted.phase == .starting, wanted.spec == spec else { return }
        guard let model = effective[spec.fingerprint] ?? (try? resolve(spec.id)) else {
            apply(scheduler.startFailed(spec.id, reason: "model is no longer defined", now: Self.now()))
            return
        }
        let startedAt = monotonicNanos()
        let process: RunnerProcess
        let slots = slotCache.flatMap { SlotCache.unsupported(model) == nil ? $0 : nil }
        if let slots { try? makeDirectories(slots.directory, mode: 0o700) }  // llama-server requires it to exist
        do {
            process = try RunnerProcess.spawn(model, logsDir: logsDir, extraArguments: slots?.arguments(model) ?? [], loop: loop)
        } catch {
            setState(spec.id, .failed, detail: "\(error)")
            context.logger.error("cannot start \(spec.id): \(error)")
            apply(scheduler.startFailed(spec.id, reason: "\(error)", now: Self.now()))
            return
        }
        processes[spec.id] = process
        status[spec.id]?.measured = nil
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
            if scheduler.runners[spec.id]?.phase == .stopping {
                // Stopped on purpose while loading (abandoned, unloaded): not a failure.
                await process.stop(grace: 2, loop: loop)
                saveRecords()
                setState(spec.id, .stopped)
                apply(scheduler.exited(spec.id, reason: "stopped while loading", now: Self.now()))
                return
            }
            setState(spec.id, .failed, detail: "\(error)")
            context.logger.error("runner for \(spec.id) failed to load: \(error)")
            await process.stop(grace: 2, loop: loop)
            saveRecords()
            apply(scheduler.startFailed(spec.id, reason: "\(error)", now: Self.now()))
            return
        }
        progress(spec.id, process: process)  // a fast load still reports its last progress line
        process.loading = false
        process.log.poll()
        status[spec.id]?.measured = BufferSizes.parse(process.log.tail(500))
        // Conversations saved at its last unload go back before the first request is let through.
        if let slots { await restoreSlots(slots, model: model, process: process) }
        readyAt[spec.id] = monotonicNanos()
        let ms = Int((monotonicNanos() - startedAt) / 1_000_000)
        status[spec.id]?.loadDurationMs = ms
        setState(spec.id, .ready)
        context.logger.info("runner ready", ("model", spec.id), ("load_ms", ms))
        apply(scheduler.started(spec.id, now: Self.now()))
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
