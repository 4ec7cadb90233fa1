import Glibc
import Shared

/// `runners.json`, adopting what a previous runner-manager left running, and stopping.
extension RunnerManager {
    // MARK: Adoption and shutdown

    /// The queue `runners.json` is written on: in order, off the event loop (each write fsyncs twice).
    nonisolated var recordsQueue: BlockingQueue { BlockingPool.shared.queue(for: "runners.json") }

    func saveRecords() {
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
            // Its buffer sizes, from the log since its start line (the last 4 MiB of the file at most).
            let logPath = record.logPath
            let lines = await BlockingPool.shared.run { () -> [String] in
                let text = readFile(logPath, maxBytes: 4 << 20) ?? ""
                let lines = text.split(separator: "\n").map(String.init)
                let start = lines.lastIndex { $0.hasPrefix("=== ") && $0.containsText(" starting ") } ?? 0
                return Array(lines[start...])
            }
            status[model.id]?.measured = BufferSizes.parse(lines)
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
