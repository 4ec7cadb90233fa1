import Glibc
import Shared
import Synchronization

/// Every pull, from a name to a registered model: the hub asked for the repository's files, the
/// files chosen (`FileSelection`), each downloaded (`FileDownload`) into
/// `<models folder>/<user>/<repo>/`, then the model added to `models_config.json` (with a backup, as
/// every edit) and usable at once. Two pulls that need the same file share one download; a pull of
/// a model already being pulled joins that pull. Progress goes to subscribers as
/// `registry.pullProgress` (at most every 100 ms per pull, and at each phase). A cancelled pull
/// stops its downloads unless another pull is waiting for them; what was downloaded stays as a
/// resumable `.partial` file. Finished pulls are kept an hour (the last 100) for status queries.
actor PullManager {
    let store: RegistryStore
    let loop: EventLoop
    let web: WebClient
    let notify: @Sendable (PullStatus) -> Void

    private struct Job {
        var status: PullStatus
        var task: Task<Void, Never>?
        var downloads: [FileDownload] = []
        var lastNotified: UInt64 = 0
        var startedAt = monotonicNanos()
    }

    private var jobs: [String: Job] = [:]
    private var order: [String] = []
    private var shared: [String: SharedDownload] = [:]
    private var nextJob = 0

    /// Progress notifications per pull, at most this often.
    static let progressInterval = 0.1

    init(store: RegistryStore, loop: EventLoop, web: WebClient = WebClient(), notify: @escaping @Sendable (PullStatus) -> Void) {
        self.store = store
        self.loop = loop
        self.web = web
        self.notify = notify
    }

    // MARK: Requests

    func pull(_ request: PullRequest) throws(RPCFault) -> PullStatus {
        let name: HubName
        switch HubName.parse(request.name, quantization: request.quantization) {
        case .success(let n): name = n
        case .failure(let invalid): throw RPCFault(code: RPCFault.validationCode, message: invalid.message)
        }
        if let running = jobs.values.first(where: { $0.status.model == name.modelID && !$0.status.phase.isFinished }) {
            return running.status
        }
        nextJob += 1
        let id = "pull-\(nextJob)-\(ResponseID.random(6))"
        var job = Job(status: PullStatus(job: id, name: request.name, model: name.modelID, repo: name.repo, phase: .resolving,
                                         startedAt: Self.nowMs()))
        job.task = Task(executorPreference: loop) { await self.run(id, name) }
        jobs[id] = job
        order.append(id)
        trim()
        publish(id, force: true)
        return job.status
    }

    func status(_ id: String) throws(RPCFault) -> PullStatus {
        guard let job = jobs[id] else { throw RPCFault.notFound("no pull \(id) (pulls are kept an hour after they end)") }
        return refreshed(job).status
    }

    func list() -> [PullStatus] { order.reversed().compactMap { jobs[$0].map { refreshed($0).status } } }

    func cancel(_ id: String) throws(RPCFault) -> PullStatus {
        guard let job = jobs[id] else { throw RPCFault.notFound("no pull \(id)") }
        job.task?.cancel()
        return job.status
    }

    // MARK: The pull

    private func run(_ id: String, _ name: HubName) async {
        let ticker = Task(executorPreference: loop) {
            while !Task.isCancelled {
                try? await self.loop.sleep(seconds: Self.progressInterval)
                await self.publish(id, force: false)
            }
        }
        defer { ticker.cancel() }
        do throws(HubError) {
            let config = store.publishedAppConfig
            let hub = try HubClient.configured(endpoint: config.hubEndpoint, web: web).get()
            guard let folder = config.primaryModelsFolder(configDir: store.configDir) else {
                throw HubError(failure: .other, message: "paths.models_dirs is empty in app_config.json: there is no folder to download into")
            }
            let repository = try await hub.repository(name.repo)
            let choice: FileSelection.Choice
            switch FileSelection.choose(repository.files, for: name) {
            case .success(let c): choice = c
            case .failure(let invalid): throw HubError(failure: .notFound, message: invalid.message)
            }
            let files = choice.model + (choice.projector.map { [$0] } ?? [])
            let base = "\(folder)/\(name.repo)"
            let downloads = files.map { f in
                attach(FileDownload(hub: hub, repo: name.repo, commit: repository.commit, file: f, destination: "\(base)/\(f.path)",
                                    reserveBytes: config.limits.downloadReserveBytes, loop: loop))
            }
            update(id) { job in
                job.downloads = downloads.map(\.download)
                job.status.phase = .downloading
                job.status.files = files.map { PullFile(name: $0.path, digest: "sha256:" + ($0.sha256 ?? ""), total: $0.size, completed: 0) }
            }
            publish(id, force: true)
            var fresh = false
            for shared in downloads {
                let outcome = try await wait(for: shared)
                if outcome == .downloaded { fresh = true }
            }
            update(id) { job in
                job = refreshed(job)
                for i in job.status.files.indices { job.status.files[i].completed = job.status.files[i].total }
                job.status.phase = .verifying
                job.status.alreadyDownloaded = !fresh
            }
            publish(id, force: true)
            update(id) { $0.status.phase = .registering }
            publish(id, force: true)
            try await register(name, choice: choice, base: base, hub: hub, commit: repository.commit)
            finish(id, phase: .done)
        } catch {
            if Task.isCancelled || error.message == "cancelled" {
                finish(id, phase: .cancelled, failure: nil, error: "the pull was cancelled; what was downloaded is kept and a new pull resumes it")
            } else {
                finish(id, phase: .failed, failure: error.failure, error: error.message)
            }
        }
    }

    /// Adds (or replaces) the model's entry: the first model file, its projector, and where they
    /// came from (so deleting the model may delete the files it downloaded).
    private func register(_ name: HubName, choice: FileSelection.Choice, base: String, hub: HubClient, commit: String) async throws(HubError) {
        let files = choice.model.map { "\(base)/\($0.path)" } + (choice.projector.map { ["\(base)/\($0.path)"] } ?? [])
        let configDir = store.configDir
        var entry = JSONObject([("model_path", .string(relativePath(files[0], from: configDir)))])
        entry["parameters"] = .object(JSONObject())
        if let p = choice.projector { entry["mmproj"] = .string(relativePath("\(base)/\(p.path)", from: configDir)) }
        entry["auto_discovered"] = .bool(false)
        entry["auto_update_model"] = .bool(false)
        entry["source"] = .object(JSONObject([
            ("type", .string(ModelSource.hub.rawValue)), ("endpoint", .string(hub.endpoint.origin)), ("repo", .string(name.repo)),
            ("commit", .string(commit)), ("files", .array(files.map { .string(relativePath($0, from: configDir)) })),
        ]))
        do throws(RPCFault) {
            try await store.registerPulled(id: name.modelID, entry: JSONValue.object(entry), files: files)
        } catch {
            throw HubError(failure: .other, message: "the files are in \(base), but registering \(name.modelID) failed: \(error.message)")
        }
    }

    // MARK: Shared downloads

    private func attach(_ download: FileDownload) -> SharedDownload {
        if let existing = shared[download.destination], !existing.isFinished { return existing }
        let s = SharedDownload(download: download, loop: loop) { [weak self] destination in
            Task { await self?.downloadEnded(destination) }
        }
        shared[download.destination] = s
        return s
    }

    private func downloadEnded(_ destination: String) {
        if shared[destination]?.isFinished == true { shared[destination] = nil }
    }

    /// Waits for a shared download; a cancelled pull stops waiting at once, and stops the download
    /// when nobody else waits for it.
    private func wait(for s: SharedDownload) async throws(HubError) -> FileDownload.Outcome {
        let result = await s.wait()
        return try result.get()
    }

    // MARK: State

    private func update(_ id: String, _ change: (inout Job) -> Void) {
        guard var job = jobs[id] else { return }
        change(&job)
        jobs[id] = job
    }

    /// The job with its files' progress read from their downloads.
    private func refreshed(_ job: Job) -> Job {
        var job = job
        guard job.status.phase == .downloading else { return job }
        for (i, d) in job.downloads.enumerated() where i < job.status.files.count {
            let p = d.progress
            job.status.files[i].completed = p.completed
            if p.total > 0 { job.status.files[i].total = p.total }
        }
        let seconds = Double(monotonicNanos() &- job.startedAt) / 1e9
        if seconds > 0.5 { job.status.bytesPerSecond = Double(job.status.completedBytes) / seconds }
        return job
    }

    private func publish(_ id: String, force: Bool) {
        guard let job = jobs[id] else { return }
        let now = monotonicNanos()
        guard force || now &- job.lastNotified >= UInt64(Self.progressInterval * 1e9) else { return }
        let fresh = refreshed(job)
        if !force && fresh.status == job.status { return }
        var stored = fresh
        stored.lastNotified = now
        jobs[id] = stored
        notify(fresh.status)
    }

    private func finish(_ id: String, phase: PullPhase, failure: PullFailure? = nil, error: String? = nil) {
        update(id) { job in
            job = refreshed(job)
            if phase == .done {
                for i in job.status.files.indices { job.status.files[i].completed = job.status.files[i].total }
            }
            job.status.phase = phase
            job.status.failure = failure
            job.status.error = error
            job.status.completedAt = Self.nowMs()
            job.task = nil
            job.downloads = []
        }
        publish(id, force: true)
    }

    /// Keeps finished pulls an hour, the last 100.
    private func trim() {
        let cutoff = Self.nowMs() - 3_600_000
        let excess = order.count - 100
        var dropped = 0
        var kept: [String] = []
        for id in order {
            if let job = jobs[id], job.status.phase.isFinished, (job.status.completedAt ?? 0) < cutoff || dropped < excess {
                jobs[id] = nil
                dropped += 1
            } else {
                kept.append(id)
            }
        }
        order = kept
    }

    static func nowMs() -> Int { unixMillis() }
}

/// One file's download, shared by every pull that needs it: it runs as its own task, and each waiting
/// pull is a waiter that can leave (its pull was cancelled) without stopping it for the others. When
/// the last waiter leaves, the download is cancelled (its partial file stays, resumable).
final class SharedDownload: Sendable {
    let download: FileDownload
    private struct State {
        var result: Result<FileDownload.Outcome, HubError>?
        var waiters: [Int: CheckedContinuation<Result<FileDownload.Outcome, HubError>, Never>] = [:]
        var nextWaiter = 0
        var task: Task<Void, Never>?
    }
    private let state = Mutex(State())

    init(download: FileDownload, loop: EventLoop, ended: @escaping @Sendable (String) -> Void) {
        self.download = download
        let task = Task(executorPreference: loop) { [download] in
            let result: Result<FileDownload.Outcome, HubError>
            do throws(HubError) { result = .success(try await download.run()) } catch { result = .failure(error) }
            let waiters = self.state.withLock { s -> [CheckedContinuation<Result<FileDownload.Outcome, HubError>, Never>] in
                s.result = result
                defer { s.waiters = [:] }
                return Array(s.waiters.values)
            }
            for w in waiters { w.resume(returning: result) }
            ended(download.destination)
        }
        state.withLock { $0.task = task }
    }

    var isFinished: Bool { state.withLock { $0.result != nil } }

    /// The download's outcome; a cancelled caller gets a cancellation at once.
    func wait() async -> Result<FileDownload.Outcome, HubError> {
        let id = state.withLock { s -> Int in
            s.nextWaiter += 1
            return s.nextWaiter
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Result<FileDownload.Outcome, HubError>, Never>) in
                let done = state.withLock { s -> Result<FileDownload.Outcome, HubError>? in
                    if let r = s.result { return r }
                    s.waiters[id] = c
                    return nil
                }
                if let done { c.resume(returning: done) } else if Task.isCancelled { leave(id) }
            }
        } onCancel: {
            leave(id)
        }
    }

    private func leave(_ id: Int) {
        let (continuation, last, task) = state.withLock { s -> (CheckedContinuation<Result<FileDownload.Outcome, HubError>, Never>?, Bool, Task<Void, Never>?) in
            let c = s.waiters.removeValue(forKey: id)
            return (c, s.waiters.isEmpty && s.result == nil, s.task)
        }
        continuation?.resume(returning: .failure(HubError(failure: .other, message: "cancelled")))
        if last { task?.cancel() }
    }
}

/// Short random ids.
enum ResponseID {
    static func random(_ bytes: Int) -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<bytes).map { _ in
            let b = UInt8.random(in: 0...255, using: &generator)
            return (b < 16 ? "0" : "") + String(b, radix: 16)
        }.joined()
    }
}
