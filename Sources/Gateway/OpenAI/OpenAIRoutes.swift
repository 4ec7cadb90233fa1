import Shared

/// Reads a request's JSON body, with errors in the caller's shape: 413 over the limit, 400 for an
/// empty body, invalid JSON (with line and column) or anything but an object.
struct JSONBodyReader: Sendable {
    let limit: Int

    /// The body as a JSON object and its bytes; an `APIError` (413 over the limit, 400 otherwise).
    func read(_ request: HTTPRequest) async throws(APIError) -> (JSONValue, [UInt8]) {
        let bytes: [UInt8]
        do {
            bytes = try await request.body.collect(upTo: limit)
        } catch let error as HTTPError {
            throw APIError(error.status, error.message)
        } catch {
            throw .badRequest("cannot read the request body: \(error)")
        }
        if bytes.isEmpty { throw .badRequest("missing request body") }
        let doc: JSONValue
        do {
            doc = try JSONParser.parse(bytes).0
        } catch {
            throw .badRequest("invalid JSON in the request body: \(error)")
        }
        guard doc.objectValue != nil else { throw .badRequest("the request body must be a JSON object") }
        return (doc, bytes)
    }
}

/// The OpenAI API (`/v1/*`, on the Ollama and LM Studio ports) and the other APIs llama-server
/// implements itself (OpenAI Responses, Anthropic Messages, rerank, infill, tokenize…): resolved by
/// `model`, relayed to the runner as they are.
struct OpenAIRoutes: Sendable {
    let catalog: ModelCatalog
    let relay: RunnerRelay
    let bodies: JSONBodyReader
    /// `owned_by` in model lists: LM Studio clients expect "organization_owner".
    var ownedBy = "llama-runner"
    /// Streamed chat requests that wait for a load show its progress (`stream_loading_progress`).
    var loadProgress = false
    /// Where audio uploads are spooled while their `model` field is awaited (the run directory).
    var spoolDirectory = "/tmp"

    /// Routes relayed to the runner: (public path, api label).
    static let relayed: [(String, String)] = [
        ("/v1/chat/completions", "openai"), ("/v1/completions", "openai"), ("/v1/embeddings", "openai"),
        ("/v1/responses", "openai"), ("/v1/rerank", "openai"), ("/v1/messages", "anthropic"),
        ("/v1/messages/count_tokens", "anthropic"), ("/infill", "llama"), ("/tokenize", "llama"),
        ("/detokenize", "llama"), ("/apply-template", "llama"),
    ]

    func register(on router: inout Router) {
        router.get("/v1/models") { request, _ in await models(localOnly: request.head.headers[PeerDirectory.listingHeader] != nil) }
        router.get("/v1/models/{id...}") { _, p in await model(p["id"] ?? "") }
        for (path, api) in Self.relayed {
            router.post(path) { request, _ in try await forward(request, path: path, api: api) }
        }
        AudioRoutes(catalog: catalog, relay: relay, limit: bodies.limit, spoolDirectory: spoolDirectory).register(on: &router)
    }

    func loadedModels() async -> Set<String>? {
        guard let list = await relay.runnerList() else { return nil }
        return Set(list.filter { $0.state == .ready }.map(\.model))
    }

    func entry(_ m: ResolvedModel, loaded: Set<String>?) -> JSONValue {
        .object(JSONObject([
            ("id", .string(m.id)), ("object", .string("model")), ("created", .int(Self.created(m))),
            ("owned_by", .string(ownedBy)),
            ("state", .string(loaded.map { $0.contains(m.id) ? "loaded" : "not-loaded" } ?? "unknown")),
        ]))
    }

    /// The model file's modification time, as OpenAI's `created`.
    static func created(_ m: ResolvedModel) -> Int {
        (FileStamp.of(m.path)?.modifiedNanos ?? 0) / 1_000_000_000
    }

    /// `localOnly`: another Llama Runner reading this one as its peer gets only the models served here.
    func models(localOnly: Bool = false) async -> HTTPResponse {
        let loaded = await loadedModels()
        let data = catalog.current.models.filter { !$0.unlisted && !(localOnly && $0.peer != nil) }.map { entry($0, loaded: loaded) }
        return .json(JSONWriter.bytes(.object(JSONObject([("object", .string("list")), ("data", .array(data))])), pretty: false))
    }

    func model(_ id: String) async -> HTTPResponse {
        guard let m = catalog.resolve(id) else { return notFound(id, shape: .openAI) }
        return .json(JSONWriter.bytes(entry(m, loaded: await loadedModels()), pretty: false))
    }

    func notFound(_ name: String, shape: ErrorShape) -> HTTPResponse { notFoundError(name, shape: shape).response(in: shape) }

    /// An unknown model, listing the ones there are, worded as the surface's own server words it.
    func notFoundError(_ name: String, shape: ErrorShape) -> APIError {
        let available = catalog.availableNames
        let message = shape == .ollama
            ? "model '\(name)' not found (models are local GGUF files; available: \(available.joined(separator: ", ")))"
            : "The model `\(name)` does not exist. Available models: \(available.joined(separator: ", "))"
        return APIError(.notFound, message, param: "model", code: "model_not_found")
    }

    /// Parses just enough (the `model` field), acquires, and relays the original bytes.
    func forward(_ request: HTTPRequest, path: String, api: String) async throws -> HTTPResponse {
        let (doc, bytes) = try await bodies.read(request)
        let name: String?
        switch doc["model"] {
        case nil, .null?: name = nil
        case .string(let s)?: name = s
        default: return ErrorShape.openAI.response(.badRequest, "model: expected a string", param: "model")
        }
        guard let model = catalog.resolve(name) else {
            return name == nil ? ErrorShape.openAI.response(.badRequest, "model is required (no default_model is configured)", param: "model")
                               : notFound(name!, shape: .openAI)
        }
        if model.mmproj == nil, let i = doc["messages"]?.arrayValue?.firstIndex(where: OllamaTranslation.hasImage) {
            return ErrorShape.openAI.response(.badRequest, "model '\(model.id)' cannot read images (messages[\(i)] has one): it has no vision " +
                                              "projector; set mmproj in models_config.json to its mmproj GGUF file, or use a vision model",
                                              param: "messages[\(i)].content", code: "model_not_multimodal")
        }
        let accept = doc["stream"]?.boolValue == true ? "text/event-stream" : "application/json"
        // Embeddings from a model not configured for them: a runner started with --embeddings (mean pooling).
        let parameters: JSONValue? = path == "/v1/embeddings" && model.parameters["embeddings"]?.boolValue != true
            ? .object(JSONObject([("embeddings", .bool(true)), ("pooling", .string("mean"))])) : nil
        // LM Studio's `ttl` (seconds idle before unloading) works on every surface.
        let keepAlive = doc["ttl"]?.doubleValue
        let (origin, relay) = (RequestOrigin(request), self.relay)
        let answer: @Sendable () async throws -> HTTPResponse = {
            let call = try await relay.call(origin, model: model, path: path, body: bytes, keepAlive: keepAlive, parameters: parameters, accept: accept)
            return relay.passthrough(call, api: api, route: path, shape: .openAI)
        }
        if loadProgress && accept == "text/event-stream" && path == "/v1/chat/completions" && !relay.isReady(model.id) {
            return LoadProgress(surface: .openAIChat, name: name ?? model.id, note: { relay.loadingNote(model.id) }).response(answer)
        }
        return try await answer()
    }
}
