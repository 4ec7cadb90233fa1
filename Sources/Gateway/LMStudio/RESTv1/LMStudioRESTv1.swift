import Shared

/// LM Studio's REST API v1 on 1234 (LM Studio 0.4's `/api/v1`): models with their loaded instances,
/// load and unload, the stateful chat (`StatefulChat`), and the download endpoints, which answer that
/// downloading is not supported yet. Errors are in v1's own shape (`ErrorShape.lmstudioV1`);
/// `Authorization: Bearer` with `proxies.lmstudio.api_keys` is checked in front, as on every route.
struct LMStudioRESTv1: Sendable {
    let backend: LMStudioBackend
    let bodies: JSONBodyReader
    let chat: StatefulChat
    let pulls: PullTracker

    static let shape = ErrorShape.lmstudioV1

    func register(on router: inout Router) {
        router.get("/api/v1/models") { _, _ in await models() }
        router.post("/api/v1/models/load") { r, _ in try await load(r) }
        router.post("/api/v1/models/unload") { r, _ in try await unload(r) }
        router.post("/api/v1/chat") { r, _ in try await chat.respond(r) }
        router.post("/api/v1/models/download") { r, _ in try await download(r) }
        router.get("/api/v1/models/download/status/{job}") { _, p in try await downloadStatus(p["job"] ?? "") }
    }

    // MARK: Downloads

    /// `{model, quantization?}`: a Hugging Face repository (`user/repo`, or its URL) pulled by
    /// model-registry. Answers once the files are known (their total size), with the job to follow.
    func download(_ request: HTTPRequest) async throws -> HTTPResponse {
        let doc = try await bodies.read(request).0
        guard let name = doc["model"]?.stringValue, !name.isEmpty else {
            throw APIError(.badRequest, "\"model\" is required", param: "model", code: "missing_required_parameter")
        }
        let started = try await pulls.start(name, quantization: doc["quantization"]?.stringValue)
        var status = started
        for await update in pulls.updates(started.job) {
            status = update
            if update.phase != .resolving { break }
        }
        if status.phase == .failed {
            throw APIError(PullTracker.httpStatus(status.failure), status.error ?? "the download failed", param: "model")
        }
        return OllamaAPI.json(Self.job(status, full: false))
    }

    func downloadStatus(_ job: String) async throws -> HTTPResponse {
        let status: PullStatus
        do {
            status = try await pulls.status(job)
        } catch {
            guard error.status == .notFound else { throw error }
            return Self.shape.response(.notFound, "no download job \"\(job)\" (jobs are kept an hour after they end)", type: "job_not_found")
        }
        return OllamaAPI.json(Self.job(status, full: true))
    }

    /// A pull as LM Studio's download job: `downloading`, `paused` (cancelled: the partial file
    /// resumes), `completed`, `failed` or `already_downloaded`.
    static func job(_ s: PullStatus, full: Bool) -> JSONValue {
        let state: String = switch s.phase {
        case .done: s.alreadyDownloaded ? "already_downloaded" : "completed"
        case .failed: "failed"
        case .cancelled: "paused"
        default: "downloading"
        }
        var o = JSONObject([("job_id", .string(s.job)), ("status", .string(state))])
        if s.totalBytes > 0 { o["total_size_bytes"] = .int(s.totalBytes) }
        o["started_at"] = .string(iso(s.startedAt))
        if let end = s.completedAt { o["completed_at"] = .string(iso(end)) }
        if full {
            o["downloaded_bytes"] = .int(s.completedBytes)
            if let bps = s.bytesPerSecond, bps > 0, !s.phase.isFinished {
                o["bytes_per_second"] = .double(bps)
                let left = Double(max(0, s.totalBytes - s.completedBytes)) / bps
                o["estimated_completion"] = .string(iso(PullManagerClock.nowMs() + Int(left * 1000)))
            }
            if let error = s.error, s.phase == .failed { o["error"] = .string(error) }
        }
        return .object(o)
    }

    static func iso(_ ms: Int) -> String { UTCTime.rfc3339(seconds: ms / 1000, nanoseconds: (ms % 1000) * 1_000_000, fractionDigits: 3) }

    func models() async -> HTTPResponse {
        let loaded = await backend.loadedInstances()
        let entries = backend.catalog.current.models.filter(LMStudioModelInfo.isOffered).map { m in
            LMStudioModelInfo.restEntry(m, instances: loaded.filter { $0.model.id == m.id })
        }
        return OllamaAPI.json(.object(JSONObject([("models", .array(entries))])))
    }

    /// The model a request names, or v1's not-found error.
    func model(_ doc: JSONValue, field: String = "model") throws(APIError) -> ResolvedModel {
        guard let name = doc[field]?.stringValue, !name.isEmpty else {
            throw APIError(.badRequest, "\"\(field)\" is required", param: field, code: "missing_required_parameter")
        }
        guard let m = backend.resolve(name) else {
            throw APIError(.notFound, "model \"\(name)\" not found; models here: \(backend.catalog.current.models.filter(LMStudioModelInfo.isOffered).map(\.id).joined(separator: ", "))",
                           param: field, code: "model_not_found")
        }
        return m
    }

    /// Load settings in v1's names, as runner parameters.
    static func loadParameters(_ doc: JSONValue) throws(APIError) -> JSONValue? {
        var o = JSONObject()
        if let v = doc["context_length"], !v.isNull {
            guard let n = v.intValue, n > 0 else { throw APIError(.badRequest, "context_length: expected a positive integer", param: "context_length") }
            o["ctx_size"] = .int(n)
        }
        if let v = doc["eval_batch_size"], !v.isNull {
            guard let n = v.intValue, n > 0 else { throw APIError(.badRequest, "eval_batch_size: expected a positive integer", param: "eval_batch_size") }
            o["batch_size"] = .int(n)
        }
        if let v = doc["flash_attention"], !v.isNull {
            guard let on = v.boolValue else { throw APIError(.badRequest, "flash_attention: expected a boolean", param: "flash_attention") }
            o["flash_attn"] = .string(on ? "on" : "off")
        }
        return o.isEmpty ? nil : .object(o)
    }

    func load(_ request: HTTPRequest) async throws -> HTTPResponse {
        let doc = try await bodies.read(request).0
        let m = try model(doc)
        let parameters = try Self.loadParameters(doc)
        let started = monotonicNanos()
        let instance = try await backend.load(m, parameters: parameters, ttlSeconds: nil) { _ in }
        var o = JSONObject([("type", .string(LMStudioModelInfo.type(m))), ("instance_id", .string(instance.identifier)),
                            ("load_time_seconds", .double(Double(monotonicNanos() &- started) / 1e9)), ("status", .string("loaded"))])
        if doc["echo_load_config"]?.boolValue == true {
            var config = JSONObject([("context_length", .int(instance.contextLength))])
            if let batch = parameters?["batch_size"] ?? m.parameters["batch_size"] { config["eval_batch_size"] = batch }
            if let fa = parameters?["flash_attn"] ?? m.parameters["flash_attn"] { config["flash_attention"] = .bool(fa.stringValue == "on" || fa.boolValue == true) }
            o["load_config"] = .object(config)
        }
        return OllamaAPI.json(.object(o))
    }

    func unload(_ request: HTTPRequest) async throws -> HTTPResponse {
        let doc = try await bodies.read(request).0
        guard let id = doc["instance_id"]?.stringValue, !id.isEmpty else {
            throw APIError(.badRequest, "\"instance_id\" is required", param: "instance_id", code: "missing_required_parameter")
        }
        let loaded = await backend.loadedInstances()
        guard let instance = loaded.first(where: { $0.identifier == id }) ?? backend.resolve(id).flatMap({ m in loaded.first { $0.model.id == m.id } }) else {
            throw APIError(.notFound, "no loaded model instance \"\(id)\" (loaded: \(loaded.map(\.identifier).joined(separator: ", ")))",
                           param: "instance_id", code: "model_not_found")
        }
        try await backend.unload(instance.model)
        return OllamaAPI.json(.object(JSONObject([("instance_id", .string(instance.identifier))])))
    }
}

/// Wall-clock milliseconds (for the download job's estimate).
enum PullManagerClock {
    static func nowMs() -> Int { LMStudioInstances.nowMs() }
}
