import Shared

/// LM Studio's REST v0 API on 1234 (the shapes of LM Studio 0.3's `/api/v0`): models with their type, arch,
/// quantization and load state, and chat/completions/embeddings answered in the OpenAI shape plus
/// `stats`, `model_info` and `runtime`. The request field `ttl` sets the model's idle timeout.
struct LMStudioAPI: Sendable {
    let catalog: ModelCatalog
    let relay: RunnerRelay
    let bodies: JSONBodyReader
    let openAI: OpenAIRoutes

    static let runtime = JSONValue.object(JSONObject([("name", .string("llama.cpp-linux-x86_64-cpu")),
                                                      ("version", .string(LlamaRunnerVersion.current)),
                                                      ("supported_formats", .array([.string("gguf")]))]))

    func register(on router: inout Router) {
        router.get("/api/v0/models") { _, _ in await models() }
        router.get("/api/v0/models/{id...}") { _, p in await model(p["id"] ?? "") }
        for (path, upstream) in [("/api/v0/chat/completions", "/v1/chat/completions"), ("/api/v0/completions", "/v1/completions"),
                                 ("/api/v0/embeddings", "/v1/embeddings")] {
            router.post(path) { r, _ in try await complete(r, route: path, upstream: upstream) }
        }
    }

    func entry(_ m: ResolvedModel, runners: [String: RunnerInfo]) -> JSONValue {
        let loaded = runners[m.id].map { $0.state == .ready } ?? false
        var o = JSONObject([
            ("id", .string(m.id)), ("object", .string("model")),
            ("type", .string(m.kind == .embedding ? "embeddings" : m.kind == .audio ? "audio" : m.mmproj != nil ? "vlm" : "llm")),
            ("publisher", .string("local")), ("arch", .string(m.runtimeKind == .whisperServer ? "whisper" : m.metadata?.architecture ?? "unknown")),
            ("compatibility_type", .string(m.runtimeKind == .whisperServer ? "ggml" : "gguf")), ("quantization", .string(m.metadata?.quantization ?? "unknown")),
            ("state", .string(loaded ? "loaded" : "not-loaded")),
            ("max_context_length", .int(m.metadata?.contextLength ?? 0)),
        ])
        if loaded, let r = runners[m.id] {
            o["loaded_context_length"] = .int(r.contextLength ?? m.parameters["ctx_size"]?.intValue ?? m.metadata?.contextLength ?? 0)
            // Our own fields: what the runner really holds (llama-server's buffer sizes once loaded).
            o["memory"] = LMStudioModelInfo.memory(r)
        }
        return .object(o)
    }

    func runnerTable() async -> [String: RunnerInfo] { await relay.runnerTable() }

    func models() async -> HTTPResponse {
        let runners = await runnerTable()
        let data = catalog.current.models.filter { !$0.unlisted }.map { entry($0, runners: runners) }
        return OllamaAPI.json(.object(JSONObject([("object", .string("list")), ("data", .array(data))])))
    }

    func model(_ id: String) async -> HTTPResponse {
        guard let m = catalog.resolve(id) else { return openAI.notFound(id, shape: .openAI) }
        return OllamaAPI.json(entry(m, runners: await runnerTable()))
    }

    func complete(_ request: HTTPRequest, route: String, upstream: String) async throws -> HTTPResponse {
        let (doc, bytes) = try await bodies.read(request)
        guard let name = doc["model"]?.stringValue else { return ErrorShape.openAI.response(.badRequest, "model is required", param: "model") }
        guard let model = catalog.resolve(name) else { return openAI.notFound(name, shape: .openAI) }
        let ttl = doc["ttl"]?.doubleValue
        let streaming = doc["stream"]?.boolValue == true
        let parameters: JSONValue? = upstream == "/v1/embeddings" && model.parameters["embeddings"]?.boolValue != true
            ? .object(JSONObject([("embeddings", .bool(true)), ("pooling", .string("mean"))])) : nil
        let call = try await relay.call(RequestOrigin(request), model: model, path: upstream, body: bytes, keepAlive: ttl, parameters: parameters,
                                        accept: streaming ? "text/event-stream" : "application/json")
        // Streams are plain OpenAI chunks, as LM Studio sends them.
        if streaming || call.upstream.status.code != 200 { return relay.passthrough(call, api: "lmstudio", route: route, shape: .openAI) }
        let text = (try? await call.upstream.collect(upTo: 256 << 20)) ?? []
        guard case .object(var reply)? = try? JSONParser.parse(text).0 else {
            call.lease.release()
            let message = "the runner for \(model.id) sent an unreadable answer"
            relay.record(call, api: "lmstudio", route: route, status: 502, firstByteAt: nil, usage: Usage(), clientGone: false, error: message)
            return ErrorShape.openAI.response(.badGateway, message)
        }
        let usage = UsageScanner.usage(in: text)
        call.lease.release(usage: usage)
        relay.record(call, api: "lmstudio", route: route, status: 200, firstByteAt: monotonicNanos(), usage: usage, clientGone: false)
        if upstream != "/v1/embeddings" {
            let t = reply["timings"] ?? .null
            let finish = reply["choices"]?.arrayValue?.first?["finish_reason"]?.stringValue ?? "stop"
            let stop = finish == "length" ? "maxPredictedTokensReached" : finish == "tool_calls" ? "toolCalls" : "eosFound"
            reply["stats"] = .object(JSONObject([
                ("tokens_per_second", .double(t["predicted_per_second"]?.doubleValue ?? 0)),
                ("time_to_first_token", .double((t["prompt_ms"]?.doubleValue ?? 0) / 1000)),
                ("generation_time", .double((t["predicted_ms"]?.doubleValue ?? 0) / 1000)),
                ("stop_reason", .string(stop)),
            ]))
            reply["model_info"] = .object(JSONObject([
                ("arch", .string(model.metadata?.architecture ?? "unknown")), ("quant", .string(model.metadata?.quantization ?? "unknown")),
                ("format", .string("gguf")), ("context_length", .int(model.parameters["ctx_size"]?.intValue ?? model.metadata?.contextLength ?? 0)),
            ]))
            reply["runtime"] = Self.runtime
        }
        var response = OllamaAPI.json(.object(reply))
        for (n, v) in relay.timingHeaders(call) { response.headers.add(n, v) }
        return response
    }
}
