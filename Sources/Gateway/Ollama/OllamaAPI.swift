import Glibc
import Shared

/// The Ollama API on 11434 (the wire format of Ollama 0.12): chat and generate translated to llama-server's
/// chat completions and back to NDJSON, embeddings, tags/ps/show from the registry and runner-manager,
/// and model management (pull, create, copy, delete: OllamaModels; push answers 501).
struct OllamaAPI: Sendable {
    let catalog: ModelCatalog
    let relay: RunnerRelay
    let bodies: JSONBodyReader
    let openAI: OpenAIRoutes
    let modelsFolder: String
    /// Streamed chats that wait for a load show its progress as `thinking` (`stream_loading_progress`).
    var loadProgress = false

    func register(on router: inout Router) {
        router.get("/api/tags") { _, _ in tags() }
        router.get("/api/ps") { _, _ in await ps() }
        router.post("/api/show") { r, _ in try await show(r) }
        router.post("/api/chat") { r, _ in try await generate(r, chat: true) }
        router.post("/api/generate") { r, _ in try await generate(r, chat: false) }
        router.post("/api/embed") { r, _ in try await embed(r, legacy: false) }
        router.post("/api/embeddings") { r, _ in try await embed(r, legacy: true) }
        router.post("/api/push") { _, _ in
            ErrorShape.ollama.response(.notImplemented, "/api/push is not available: Llama Runner pulls from the Hugging Face Hub and does not publish models")
        }
    }

    /// Reads the body, requires `model` (or the legacy `name` where `acceptName`), and resolves it.
    func modelRequest(_ request: HTTPRequest, acceptName: Bool = false) async throws(APIError) -> (doc: JSONValue, name: String, model: ResolvedModel) {
        let doc = try await bodies.read(request).0
        guard let name = doc["model"]?.stringValue ?? (acceptName ? doc["name"]?.stringValue : nil), !name.isEmpty else {
            throw .badRequest("model is required")
        }
        guard let model = catalog.resolve(name) else { throw openAI.notFoundError(name, shape: .ollama) }
        return (doc, name, model)
    }

    static func json(_ v: JSONValue, status: HTTPStatus = .ok) -> HTTPResponse {
        .json(JSONWriter.bytes(v, pretty: false), status: status)
    }

    // MARK: Listing

    static func parameterSize(_ n: Int) -> String {
        let d = Double(n)
        func fmt(_ v: Double, _ unit: String) -> String {
            v.rounded() == v ? "\(Int(v))\(unit)" : "\((v * 10).rounded() / 10)\(unit)"
        }
        if d >= 1e9 { return fmt(d / 1e9, "B") }
        if d >= 1e6 { return fmt(d / 1e6, "M") }
        if d >= 1e3 { return fmt(d / 1e3, "K") }
        return "\(n)"
    }

    static func details(_ m: ResolvedModel) -> JSONValue {
        let whisper = m.runtimeKind == .whisperServer
        let family = whisper ? "whisper" : m.metadata?.architecture ?? "unknown"
        return .object(JSONObject([
            ("parent_model", .string("")), ("format", .string(whisper ? "ggml" : "gguf")), ("family", .string(family)),
            ("families", .array([.string(family)] + (m.mmproj != nil ? [.string("clip")] : []))),
            ("parameter_size", .string(m.metadata?.sizeLabel ?? parameterSize(m.metadata?.parameterCount ?? 0))),
            ("quantization_level", .string(m.metadata?.quantization ?? "unknown")),
        ]))
    }

    /// A stable 64-hex digest from path, size and mtime (a sha256 of a 10 GB file would cost seconds).
    static func digest(_ m: ResolvedModel) -> String {
        let stamp = FileStamp.of(m.path)
        let seed = "\(m.path)|\(stamp?.size ?? 0)|\(stamp?.modifiedNanos ?? 0)"
        return (0..<4).map { round in FNV1a.hex(FNV1a.hash(seed.utf8, basis: FNV1a.offsetBasis &+ UInt64(round))) }.joined()
    }

    static func fullName(_ id: String) -> String { id.contains(":") ? id : id + ":latest" }

    /// Ollama's timestamps: nanoseconds, as Go writes them.
    static func rfc3339(nanos: Int) -> String {
        UTCTime.rfc3339(seconds: nanos / 1_000_000_000, nanoseconds: nanos % 1_000_000_000, fractionDigits: 9)
    }

    static func now() -> String { UTCTime.now(fractionDigits: 9) }

    /// Audio (whisper) models are left out: the Ollama API cannot use them, and Ollama apps would offer
    /// them for chat. They still show in `/api/ps` while loaded, since they take memory.
    func tags() -> HTTPResponse {
        let models: [JSONValue] = catalog.current.models.filter { !$0.unlisted && $0.state == .available && $0.kind != .audio }.map { m in
            let stamp = FileStamp.of(m.path)
            let size = (stamp?.size ?? 0) + (m.mmproj.flatMap { FileStamp.of($0)?.size } ?? 0)
            return .object(JSONObject([
                ("name", .string(Self.fullName(m.id))), ("model", .string(Self.fullName(m.id))),
                ("modified_at", .string(Self.rfc3339(nanos: stamp?.modifiedNanos ?? 0))), ("size", .int(size)),
                ("digest", .string(Self.digest(m))), ("details", Self.details(m)),
            ]))
        }
        return Self.json(.object(JSONObject([("models", .array(models))])))
    }

    func ps() async -> HTTPResponse {
        let list = await relay.runnerList() ?? []
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        let now = ts.tv_sec * 1_000_000_000 + ts.tv_nsec
        let models: [JSONValue] = list.filter { $0.state == .ready }.compactMap { r in
            guard let m = catalog.resolve(r.model) else { return nil }
            let expires = r.expiresInSeconds.map { now + Int($0 * 1e9) } ?? (r.activeLeases > 0 ? now + 300_000_000_000 : now + 292 * 365 * 86400 * 1_000_000_000)
            return .object(JSONObject([
                ("name", .string(Self.fullName(m.id))), ("model", .string(Self.fullName(m.id))),
                ("size", .int(r.measuredMemory?.totalBytes ?? r.rssBytes ?? r.memoryEstimateBytes)),
                ("digest", .string(Self.digest(m))), ("details", Self.details(m)), ("expires_at", .string(Self.rfc3339(nanos: expires))),
                // Ollama: the model's bytes in GPU memory, from the runner's own buffer sizes (0 on CPU).
                ("size_vram", .int(r.measuredMemory?.gpuBytes ?? 0)), ("context_length", .int(r.contextLength ?? m.metadata?.contextLength ?? 0)),
            ]))
        }
        return Self.json(.object(JSONObject([("models", .array(models))])))
    }

    func show(_ request: HTTPRequest) async throws -> HTTPResponse {
        let r = try await modelRequest(request, acceptName: true)
        let (doc, m) = (r.doc, r.model)
        let verbose = doc["verbose"]?.boolValue ?? false
        var info = JSONObject()
        var template = ""
        if let full = try? await catalog.registry.call(RegistryRPC.ModelInfo.self, ModelRef(model: m.id), timeout: 10),
           let entries = full["metadata"]?.objectValue {
            for (k, v) in entries.entries {
                if k == "tokenizer.chat_template" { template = v.stringValue ?? "" }
                if case .object(let summary) = v, summary["type"]?.stringValue == "array" {
                    info[k] = verbose ? v : .array([])
                } else {
                    info[k] = v
                }
            }
            info["general.parameter_count"] = full["parameter_count"] ?? .int(m.metadata?.parameterCount ?? 0)
        }
        var capabilities: [JSONValue] = []
        if m.kind == .embedding {
            capabilities = [.string("embedding")]
        } else if m.kind == .audio {
            capabilities = []  // speech to text, through /v1/audio/transcriptions only
        } else {
            capabilities = [.string("completion")]
            if m.mmproj != nil { capabilities.append(.string("vision")) }
            if template.containsText("tools") { capabilities.append(.string("tools")) }
            if template.containsText("<think>") || template.containsText("enable_thinking") || template.containsText("reasoning") { capabilities.append(.string("thinking")) }
            if info["tokenizer.ggml.fim_pre_token_id"] != nil { capabilities.append(.string("insert")) }
        }
        let parameters = (m.parameters.objectValue?.entries ?? []).map { ($0.key, $0.value) }.map { parameter, v in
            let k = OllamaOptions.ollamaName(ofParameter: parameter)
            return (k.count >= 30 ? k + " " : k.padding(toLength: 30)) + (v.stringValue.map { "\"\($0)\"" } ?? JSONWriter.write(v, pretty: false))
        }.joined(separator: "\n")
        return Self.json(.object(JSONObject([
            ("license", .string("")), ("modelfile", .string("# Llama Runner model \(m.id)\nFROM \(m.path)\n")),
            ("parameters", .string(parameters)), ("template", .string(m.template ?? template)), ("system", .string(m.systemPrompt ?? "")),
            ("details", Self.details(m)),
            ("model_info", .object(info)), ("capabilities", .array(capabilities)),
            ("modified_at", .string(Self.rfc3339(nanos: FileStamp.of(m.path)?.modifiedNanos ?? 0))),
        ])))
    }

    // MARK: Chat and generate

    func generate(_ request: HTTPRequest, chat: Bool) async throws -> HTTPResponse {
        let shape = ErrorShape.ollama
        let r = try await modelRequest(request)
        let (doc, name, model) = (r.doc, r.name, r.model)
        if model.kind == .embedding { return shape.response(.badRequest, "\"\(name)\" does not support \(chat ? "chat" : "generate")") }
        let keepAlive: Double? = try OllamaTranslation.keepAlive(doc["keep_alive"]).get()
        let (sampling, load) = try OllamaTranslation.options(doc["options"]).get()
        var messages: [JSONValue]
        if chat {
            messages = try OllamaTranslation.messages(doc["messages"]).get()
        } else {
            let prompt = doc["prompt"]?.stringValue ?? ""
            messages = prompt.isEmpty ? [] : [.object(JSONObject([("role", .string("user")), ("content", .string(prompt))]))]
            if !prompt.isEmpty, let system = doc["system"]?.stringValue {
                messages.insert(.object(JSONObject([("role", .string("system")), ("content", .string(system))])), at: 0)
            }
            if !prompt.isEmpty, let images = doc["images"], case .success(let withImages) = OllamaTranslation.messages(
                .array([.object(JSONObject([("role", .string("user")), ("content", .string(prompt)), ("images", images)]))])) {
                messages[messages.count - 1] = withImages[0]
            }
        }
        // The model's own system prompt (Ollama's SYSTEM: from its cache, or `create`) when the chat brings none.
        if let system = model.systemPrompt, !messages.isEmpty, !messages.contains(where: { $0["role"]?.stringValue == "system" }) {
            messages.insert(.object(JSONObject([("role", .string("system")), ("content", .string(system))])), at: 0)
        }
        if model.mmproj == nil, let i = messages.firstIndex(where: OllamaTranslation.hasImage) {
            return shape.response(.badRequest, "model '\(name)' cannot read images (messages[\(i)] has one): it has no vision projector; " +
                                  "set mmproj in models_config.json to its mmproj GGUF file, or use a vision model")
        }
        let parameters: JSONValue? = load.isEmpty ? nil : .object(load)
        let start = request.receivedAt

        // An empty prompt loads (or, with keep_alive 0, unloads) the model.
        if messages.isEmpty {
            var reason = "load"
            if model.peer != nil {
                // A peer's model is loaded by the peer, on its first request.
            } else if keepAlive == 0 {
                _ = try? await relay.runners.call(RunnersRPC.Unload.self, ModelRef(model: model.id), timeout: 30)
                reason = "unload"
            } else {
                do {
                    _ = try await relay.runners.call(RunnersRPC.Load.self, AcquireRequest(model: model.id, keepAlive: keepAlive, parameters: parameters), timeout: 900)
                } catch {
                    throw relay.acquireError(error, model: model.id)
                }
            }
            var line = JSONObject([("model", .string(name)), ("created_at", .string(Self.now()))])
            if chat { line["message"] = .object(JSONObject([("role", .string("assistant")), ("content", .string(""))])) } else { line["response"] = .string("") }
            line["done"] = .bool(true)
            line["done_reason"] = .string(reason)
            return Self.json(.object(line))
        }

        // Raw mode (generate only) skips the chat template: llama-server's /completion takes the prompt
        // as is; a peer (any OpenAI-compatible server) gets it on /v1/completions.
        let raw = !chat && (doc["raw"]?.boolValue ?? false)
        if raw && (doc["template"] != nil || doc["system"] != nil || doc["context"] != nil) {
            return shape.response(.badRequest, "raw mode does not support template, system, or context")
        }
        var upstream = sampling
        if raw {
            upstream["prompt"] = .string(doc["prompt"]?.stringValue ?? "")
            if model.peer != nil {
                upstream["stream_options"] = .object(JSONObject([("include_usage", .bool(true))]))
            } else if let n = upstream["max_tokens"] {
                upstream["max_tokens"] = nil
                upstream["n_predict"] = n
            }
        } else {
            upstream["messages"] = .array(messages)
        }
        upstream["stream"] = .bool(true)
        upstream["cache_prompt"] = .bool(true)
        if let tools = doc["tools"], !tools.isNull { upstream["tools"] = tools }
        if let format = try OllamaTranslation.responseFormat(doc["format"]).get() { upstream["response_format"] = format }
        if let think = doc["think"], !think.isNull {
            upstream["chat_template_kwargs"] = .object(JSONObject([("enable_thinking", .bool(think.boolValue ?? true))]))
        }
        let body = JSONWriter.bytes(.object(upstream), pretty: false)
        let stream = doc["stream"]?.boolValue ?? true
        let (origin, relay) = (RequestOrigin(request), self.relay)
        let answer: @Sendable () async throws -> HTTPResponse = {
            try await Self.relayChat(relay, origin: origin, model: model, name: name, chat: chat, raw: raw, body: body, stream: stream,
                                     keepAlive: keepAlive, parameters: parameters, start: start)
        }
        if loadProgress && stream && !relay.isReady(model.id) {
            return LoadProgress(surface: .ollama(chat: chat), name: name, note: { relay.loadingNote(model.id) }).response(answer)
        }
        return try await answer()
    }

    /// The request to the runner and its SSE stream translated into Ollama's NDJSON (or one object).
    static func relayChat(_ relay: RunnerRelay, origin: RequestOrigin, model: ResolvedModel, name: String, chat: Bool, raw: Bool, body: [UInt8],
                          stream: Bool, keepAlive: Double?, parameters: JSONValue?, start: UInt64) async throws -> HTTPResponse {
        let shape = ErrorShape.ollama
        let path = !raw ? "/v1/chat/completions" : model.peer != nil ? "/v1/completions" : "/completion"
        let call = try await relay.call(origin, model: model, path: path, body: body,
                                        keepAlive: keepAlive, parameters: parameters, accept: "text/event-stream")
        let route = chat ? "/api/chat" : "/api/generate"
        if call.upstream.status.code != 200 {
            let text = (try? await call.upstream.collect(upTo: 1 << 20)) ?? []
            call.lease.release()
            let message = RunnerRelay.errorMessage(text)
            relay.record(call, api: "ollama", route: route, status: call.upstream.status.code, firstByteAt: nil, usage: Usage(),
                         clientGone: false, error: message)
            return shape.response(call.upstream.status, message)
        }
        let translator = OllamaStream(name: name, chat: chat, loadNanos: call.grant.loadDurationMs * 1_000_000, start: start)
        var headers = relay.timingHeaders(call)
        headers.add("Content-Type", stream ? "application/x-ndjson" : "application/json; charset=utf-8")
        let box = UpstreamBox(call.upstream)
        return HTTPResponse(status: .ok, headers: headers, body: .stream(contentLength: nil) { [relay] writer in
            let upstream = box.take()
            var t = translator
            var firstByte: UInt64?
            var clientGone = false
            var failed: String?
            while true {
                let piece: [UInt8]?
                do {
                    piece = try await upstream.read()
                } catch {
                    failed = RunnerRelay.midStreamFailure(name, error)
                    break
                }
                guard let piece else { break }
                let lines = t.feed(piece)
                if stream && !lines.isEmpty {
                    if firstByte == nil { firstByte = monotonicNanos() }
                    do {
                        try await writer.write(lines)
                    } catch {
                        upstream.abandon()
                        clientGone = true
                        break
                    }
                }
            }
            if !clientGone {
                if let failed {
                    try? await writer.write(ErrorShape.ollama.streamError(failed))
                } else if let final = t.finish(aggregate: !stream) {
                    if firstByte == nil { firstByte = monotonicNanos() }
                    try? await writer.write(final)
                }
            }
            call.lease.release(usage: t.usage)
            relay.record(call, api: "ollama", route: route, status: 200, firstByteAt: firstByte, usage: t.usage, clientGone: clientGone,
                         error: failed)
        })
    }

    // MARK: Embeddings

    func embed(_ request: HTTPRequest, legacy: Bool) async throws -> HTTPResponse {
        let shape = ErrorShape.ollama
        let r = try await modelRequest(request)
        let (doc, name, model) = (r.doc, r.name, r.model)
        var inputs: [JSONValue]
        if legacy {
            inputs = (doc["prompt"]?.stringValue).map { $0.isEmpty ? [] : [.string($0)] } ?? []
        } else {
            switch doc["input"] {
            case .string(let s)?: inputs = s.isEmpty ? [] : [.string(s)]
            case .array(let list)?:
                guard list.allSatisfy({ $0.stringValue != nil }) else { return shape.response(.badRequest, "invalid input type") }
                inputs = list
            case nil, .null?: inputs = []
            default: return shape.response(.badRequest, "invalid input type")
            }
        }
        let keepAlive: Double? = try OllamaTranslation.keepAlive(doc["keep_alive"]).get()
        // A chat model can embed too, on a runner started with --embeddings.
        // (with mean pooling: a chat model has none, which llama-server's OpenAI endpoint refuses).
        let parameters: JSONValue? = model.parameters["embeddings"]?.boolValue == true ? nil
            : .object(JSONObject([("embeddings", .bool(true)), ("pooling", .string("mean"))]))
        if inputs.isEmpty {
            do {
                // (a peer's model is loaded by the peer, on its first request)
                if model.peer == nil {
                _ = try await relay.runners.call(RunnersRPC.Load.self, AcquireRequest(model: model.id, keepAlive: keepAlive, parameters: parameters), timeout: 900)
                }
            } catch {
                throw relay.acquireError(error, model: model.id)
            }
            return Self.json(legacy ? .object(JSONObject([("embedding", .array([]))]))
                                    : .object(JSONObject([("model", .string(name)), ("embeddings", .array([]))])))
        }
        let body = JSONWriter.bytes(.object(JSONObject([("input", .array(inputs)), ("encoding_format", .string("float"))])), pretty: false)
        let call = try await relay.call(RequestOrigin(request), model: model, path: "/v1/embeddings", body: body, keepAlive: keepAlive, parameters: parameters)
        let text = (try? await call.upstream.collect(upTo: 256 << 20)) ?? []
        call.lease.release()
        let embedRoute = legacy ? "/api/embeddings" : "/api/embed"
        guard call.upstream.status.code == 200, let reply = try? JSONParser.parse(text).0, let data = reply["data"]?.arrayValue else {
            let message = (try? JSONParser.parse(text).0)?["error"]?["message"]?.stringValue ?? "embedding failed"
            let status = call.upstream.status.code == 200 ? HTTPStatus.internalServerError : call.upstream.status
            relay.record(call, api: "ollama", route: embedRoute, status: status.code, firstByteAt: nil, usage: Usage(), clientGone: false, error: message)
            return shape.response(status, message)
        }
        let vectors = data.sorted { ($0["index"]?.intValue ?? 0) < ($1["index"]?.intValue ?? 0) }.map { $0["embedding"] ?? .array([]) }
        let prompt = reply["usage"]?["prompt_tokens"]?.intValue ?? 0
        relay.record(call, api: "ollama", route: legacy ? "/api/embeddings" : "/api/embed", status: 200, firstByteAt: nil,
                     usage: UsageScanner.usage(in: text), clientGone: false)
        if legacy { return Self.json(.object(JSONObject([("embedding", vectors.first ?? .array([]))]))) }
        let total = Int(monotonicNanos() &- request.receivedAt)
        return Self.json(.object(JSONObject([("model", .string(name)), ("embeddings", .array(vectors)), ("total_duration", .int(total)),
                                             ("load_duration", .int(call.grant.loadDurationMs * 1_000_000)), ("prompt_eval_count", .int(prompt))])))
    }
}
