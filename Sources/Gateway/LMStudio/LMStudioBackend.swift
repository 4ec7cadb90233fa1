import Shared

/// What LM Studio's own clients do with models — list, resolve, load with progress, unload, predict —
/// over the same registry, scheduler and runners as every other surface. The SDK's websocket
/// protocol (`SDK/`) and REST API v1 (`RESTv1/`) are two wire formats over this one backend.
struct LMStudioBackend: Sendable {
    let catalog: ModelCatalog
    let relay: RunnerRelay
    let instances: LMStudioInstances
    /// `limits.default_ttl_seconds`, for instances whose model sets none.
    let defaultTTLSeconds: Int
    let loop: EventLoop

    /// runner-manager's runners by model (empty when it does not answer).
    func runnerTable() async -> [String: RunnerInfo] { await relay.runnerTable() }

    /// The ready runners of models LM Studio clients can use, as instances (of `type` only, when given).
    func loadedInstances(type: String? = nil) async -> [LMStudioInstances.Instance] {
        let runners = await runnerTable()
        return catalog.current.models.filter(LMStudioModelInfo.isOffered).compactMap { m in
            guard let r = runners[m.id], r.state == .ready else { return nil }
            if let type, LMStudioModelInfo.type(m) != type { return nil }
            return LMStudioInstances.Instance(model: m, runner: r, loaded: instances.loaded(model: m.id))
        }
    }

    /// The model's instance, when its runner is ready.
    func instance(of model: ResolvedModel) async -> LMStudioInstances.Instance? {
        guard let r = await runnerTable()[model.id], r.state == .ready else { return nil }
        return LMStudioInstances.Instance(model: model, runner: r, loaded: instances.loaded(model: model.id))
    }

    /// The runner parameters of a request to `model`, known without asking runner-manager (from the
    /// load recorded here and its `runners.state` notifications): the predict path's first token
    /// does not wait for a `runners.list` round trip.
    func requestParameters(_ model: ResolvedModel) -> JSONValue? {
        LMStudioInstances.parameters(model, loaded: instances.loaded(model: model.id), runningContext: relay.readyContextLength(model.id))
    }

    /// A name a client uses: an instance identifier it loaded a model under, a model id, alias or
    /// display name (as every surface resolves them), or the model's file path (LM Studio's clients
    /// name models by path too: the whole path or its end).
    func resolve(_ name: String) -> ResolvedModel? {
        let snapshot = catalog.current
        if let id = instances.model(identifiedAs: name), let m = snapshot.models.first(where: { $0.id == id }) { return m }
        if let m = snapshot.resolve(name), LMStudioModelInfo.isOffered(m) { return m }
        let trimmed = name.hasPrefix("/") ? name : "/" + name
        return snapshot.models.first { LMStudioModelInfo.isOffered($0) && ($0.path == name || $0.path.hasSuffix(trimmed)) }
    }

    /// The model of a loaded instance's reference.
    func resolve(reference: String) async -> ResolvedModel? {
        await loadedInstances().first { $0.reference == reference }?.model
    }

    // MARK: Loading

    /// Loads `model` (returns at once when its runner is ready with these settings) and records the
    /// instance. `progress` is told a rising fraction every second while the load runs — estimated
    /// from the model's last load time (or its size), since llama-server reports none — so clients
    /// that give up after a silence (the sync Python SDK, after 60 s) keep waiting.
    func load(_ model: ResolvedModel, identifier: String? = nil, parameters: JSONValue?, ttlSeconds: Double?,
              progress: @escaping @Sendable (Double) async -> Void) async throws(APIError) -> LMStudioInstances.Instance {
        if model.peer != nil {
            throw APIError(.badRequest, "model '\(model.id)' is a peer's: the peer loads it on its first request", param: "model", code: "model_not_supported")
        }
        let expected = await expectedLoadSeconds(model)
        let started = monotonicNanos()
        let relay = self.relay
        let request = AcquireRequest(model: model.id, keepAlive: ttlSeconds, parameters: parameters)
        let info: RunnerInfo
        do {
            info = try await Self.whileWaiting(loop: loop, every: 1, {
                let seconds = Double(monotonicNanos() &- started) / 1e9
                await progress(seconds / (seconds + expected / 2))
            }) {
                try await relay.runners.call(RunnersRPC.Load.self, request, timeout: RunnerRelay.acquireSeconds)
            }
        } catch is CancellationError {
            throw APIError(HTTPStatus(499), "the load of \(model.id) was cancelled")
        } catch {
            throw relay.acquireError(error, model: model.id)
        }
        let loaded = LMStudioInstances.Loaded(identifier: identifier ?? instances.loaded(model: model.id)?.identifier ?? model.id,
                                              parameters: parameters, ttlSeconds: ttlSeconds, loadedAt: LMStudioInstances.nowMs())
        instances.record(model: model.id, loaded)
        return LMStudioInstances.Instance(model: model, runner: info, loaded: loaded)
    }

    /// Seconds a load of `model` is expected to take: its last load, or about 1 GB/s from disk plus a
    /// second of start-up.
    func expectedLoadSeconds(_ model: ResolvedModel) async -> Double {
        if let ms = await runnerTable()[model.id]?.loadDurationMs, ms > 0 { return Double(ms) / 1000 }
        return 1 + Double(LMStudioModelInfo.sizeBytes(model)) / 1e9
    }

    /// Unloads a model's runner (now if idle, else when its requests end).
    func unload(_ model: ResolvedModel) async throws(APIError) {
        do {
            _ = try await relay.runners.call(RunnersRPC.Unload.self, ModelRef(model: model.id), timeout: 30)
        } catch {
            throw relay.acquireError(error, model: model.id)
        }
    }

    /// Runs `operation`, calling `tick` every `interval` seconds until it returns (not at all when it
    /// returns first). Cancellation cancels both.
    static func whileWaiting<T: Sendable>(loop: EventLoop, every interval: Double, _ tick: @escaping @Sendable () async -> Void,
                                          _ operation: @escaping @Sendable () async throws -> T) async throws -> T {
        try await withThrowingTaskGroup(of: WaitEvent<T>.self) { group in
            group.addTask { .done(try await operation()) }
            group.addTask { try await loop.sleep(seconds: interval); return .tick }
            defer { group.cancelAll() }
            while let event = try await group.next() {
                switch event {
                case .done(let value): return value
                case .tick:
                    await tick()
                    group.addTask { try await loop.sleep(seconds: interval); return .tick }
                }
            }
            throw CancellationError()
        }
    }

    /// What `whileWaiting`'s tasks report.
    enum WaitEvent<T: Sendable>: Sendable { case tick, done(T) }

    // MARK: Runner calls

    /// A small request to the model's runner (tokenize, apply-template, embeddings) and its JSON answer.
    func runnerJSON(_ model: ResolvedModel, path: String, body: JSONValue, parameters: JSONValue?, route: String) async throws(APIError) -> JSONValue {
        let call = try await relay.call(RequestOrigin(receivedAt: monotonicNanos()), model: model, path: path,
                                        body: JSONWriter.bytes(body, pretty: false), parameters: parameters)
        let text: [UInt8]
        do {
            text = try await call.upstream.collect(upTo: 256 << 20)
        } catch {
            relay.record(call, api: "lmstudio", route: route, status: 502, firstByteAt: nil, usage: Usage(), clientGone: false, error: "\(error)")
            throw APIError(.badGateway, "the runner for \(model.id) did not answer: \(error)")
        }
        let usage = UsageScanner.usage(in: text)
        call.lease.release(usage: usage)
        guard call.upstream.status.code == 200, let doc = try? JSONParser.parse(text).0 else {
            let message = call.upstream.status.code == 200 ? "the runner for \(model.id) sent an unreadable answer" : RunnerRelay.errorMessage(text)
            relay.record(call, api: "lmstudio", route: route, status: call.upstream.status.code == 200 ? 502 : call.upstream.status.code,
                         firstByteAt: nil, usage: usage, clientGone: false, error: message)
            throw APIError(call.upstream.status.code == 200 ? .badGateway : call.upstream.status, message)
        }
        relay.record(call, api: "lmstudio", route: route, status: 200, firstByteAt: monotonicNanos(), usage: usage, clientGone: false)
        return doc
    }

    /// Runner parameters that make a chat model's runner serve embeddings (as on every surface).
    static func embeddingParameters(_ model: ResolvedModel, over base: JSONValue?) -> JSONValue? {
        guard model.parameters["embeddings"]?.boolValue != true else { return base }
        var o = base?.objectValue ?? JSONObject()
        o["embeddings"] = .bool(true)
        o["pooling"] = .string("mean")
        return .object(o)
    }
}
