import Shared

/// The RPCs about models: listings, resolution, unload, info, and the small runner calls (tokenize,
/// prompt template, embeddings).
extension SDKSession {
    /// The SDK instance info of `instance`, typed for this namespace.
    func info(_ instance: LMStudioInstances.Instance) -> JSONValue {
        .object(LMStudioModelInfo.sdkInstance(instance, type: namespace.modelType, defaultTTLSeconds: backend.defaultTTLSeconds))
    }

    /// Every model on offer, each as the kind it is (`/system` lists both kinds).
    func listDownloadedModels() -> JSONValue {
        .array(backend.catalog.current.models.filter(LMStudioModelInfo.isOffered).map { .object(LMStudioModelInfo.sdkInfo($0)) })
    }

    func listVariants(_ parameter: JSONValue) throws(SDKError) -> JSONValue {
        guard let key = parameter["modelKey"]?.stringValue else { throw SDKError.invalidParameter("listDownloadedModelVariants needs modelKey, a string") }
        guard let model = backend.resolve(key) else { throw notFound(key, loaded: []) }
        return .array([.object(LMStudioModelInfo.sdkInfo(model))])
    }

    /// The ready instances of this namespace's kind.
    func listLoaded() async -> JSONValue {
        .array(await backend.loadedInstances(type: namespace.modelType).map(info))
    }

    /// The SDK's own not-found error, listing what is loaded and what there is.
    func notFound(_ query: String, loaded: [String], cause: String? = nil) -> SDKError {
        let available = backend.catalog.current.models.filter { LMStudioModelInfo.isOffered($0) && usable($0) }.map(\.id)
        return SDKError.noModelMatching(query, loaded: loaded, available: available, cause: cause)
    }

    /// Whether this namespace can use the model: `/llm` chat models, `/embedding` any (a chat model
    /// embeds on a runner started for embeddings, as on every surface).
    func usable(_ m: ResolvedModel) -> Bool { namespace != .llm || m.kind != .embedding }

    /// A model by the name a client gave (model key, instance identifier, alias or path).
    func model(named name: String) async throws(SDKError) -> ResolvedModel {
        guard let m = backend.resolve(name) else { throw notFound(name, loaded: await loadedIdentifiers()) }
        guard usable(m) else {
            throw notFound(name, loaded: await loadedIdentifiers(), cause: "\(m.id) is an embedding model: use it through client.embedding")
        }
        return m
    }

    func loadedIdentifiers() async -> [String] {
        await backend.loadedInstances(type: namespace.modelType).map(\.identifier)
    }

    /// The model a specifier names: `{"type":"query","query":{"identifier"|"path"}}`, an empty query
    /// (the first loaded model, as the SDKs' `model()` without a key), or
    /// `{"type":"instanceReference","instanceReference"}`.
    func model(for specifier: JSONValue?) async throws(SDKError) -> ResolvedModel {
        guard let specifier, specifier.objectValue != nil else { throw SDKError.invalidParameter("a model specifier (an object) is required") }
        switch specifier["type"]?.stringValue {
        case "instanceReference"?:
            guard let reference = specifier["instanceReference"]?.stringValue else {
                throw SDKError.invalidParameter("an instanceReference specifier needs instanceReference, a string")
            }
            guard let m = await backend.resolve(reference: reference) else { throw notFound(reference, loaded: await loadedIdentifiers()) }
            return m
        case "query"?:
            let query = specifier["query"] ?? .null
            if let name = query["identifier"]?.stringValue ?? query["path"]?.stringValue { return try await model(named: name) }
            guard let first = await backend.loadedInstances(type: namespace.modelType).first else {
                throw notFound("(any loaded model)", loaded: [], cause: "no model is loaded")
            }
            return first.model
        default:
            throw SDKError.invalidParameter("a model specifier's type must be \"query\" or \"instanceReference\"")
        }
    }

    /// The loaded instance a specifier names (the model must be ready).
    func loadedInstance(for specifier: JSONValue?) async throws(SDKError) -> LMStudioInstances.Instance {
        let m = try await model(for: specifier)
        guard let instance = await backend.instance(of: m) else {
            throw notFound(m.id, loaded: await loadedIdentifiers(), cause: "\(m.id) is not loaded")
        }
        return instance
    }

    /// Runner parameters for a request to `model` from this namespace: the loaded instance's settings,
    /// and for `/embedding` on a chat model, those of a runner that serves embeddings.
    func runnerParameters(_ model: ResolvedModel) -> JSONValue? {
        let base = backend.requestParameters(model)
        return namespace == .embedding ? LMStudioBackend.embeddingParameters(model, over: base) : base
    }

    func unloadModel(_ parameter: JSONValue) async throws(SDKError) {
        guard let identifier = parameter["identifier"]?.stringValue else { throw SDKError.invalidParameter("unloadModel needs identifier, a string") }
        let loaded = await backend.loadedInstances(type: namespace.modelType)
        guard let instance = loaded.first(where: { $0.identifier == identifier }) ?? backend.resolve(identifier).flatMap({ m in loaded.first { $0.model.id == m.id } }) else {
            throw notFound(identifier, loaded: loaded.map(\.identifier), cause: "no loaded instance has this identifier")
        }
        do {
            try await backend.unload(instance.model)
        } catch {
            throw SDKError(error, doing: "Unloading \(instance.identifier)")
        }
    }

    func modelInfo(_ parameter: JSONValue) async throws(SDKError) -> JSONValue? {
        do {
            return info(try await loadedInstance(for: parameter["specifier"]))
        } catch {
            if parameter["throwIfNotFound"]?.boolValue == false, error.displayData != nil { return nil }
            throw error
        }
    }

    func loadConfig(_ parameter: JSONValue) async throws(SDKError) -> JSONValue {
        LMStudioModelInfo.loadConfig(try await loadedInstance(for: parameter["specifier"]))
    }

    /// `tokenize` (the token ids) or `countTokens` (their number), by the model's own tokenizer.
    func tokenize(_ parameter: JSONValue, count: Bool) async throws(SDKError) -> JSONValue {
        guard let text = parameter["inputString"]?.stringValue else { throw SDKError.invalidParameter("inputString must be a string") }
        let model = try await model(for: parameter["specifier"])
        let reply: JSONValue
        do {
            reply = try await backend.runnerJSON(model, path: "/tokenize", body: .object(JSONObject([("content", .string(text))])),
                                                 parameters: runnerParameters(model), route: count ? "ws:countTokens" : "ws:tokenize")
        } catch {
            throw SDKError(error, doing: "Tokenizing")
        }
        let tokens = reply["tokens"]?.arrayValue ?? []
        return count ? .object(JSONObject([("tokenCount", .int(tokens.count))])) : .object(JSONObject([("tokens", .array(tokens))]))
    }

    /// The history formatted by the model's chat template (llama-server's `/apply-template`).
    func applyPromptTemplate(_ parameter: JSONValue) async throws(SDKError) -> JSONValue {
        let model = try await model(for: parameter["specifier"])
        var body = JSONObject([("messages", .array(try SDKChat.messages(parameter["history"])))])
        if let tools = parameter["opts"]?["toolDefinitions"], let list = tools.arrayValue, !list.isEmpty { body["tools"] = tools }
        let reply: JSONValue
        do {
            reply = try await backend.runnerJSON(model, path: "/apply-template", body: .object(body), parameters: runnerParameters(model),
                                                 route: "ws:applyPromptTemplate")
        } catch {
            throw SDKError(error, doing: "Applying the prompt template")
        }
        return .object(JSONObject([("formatted", reply["prompt"] ?? .string(""))]))
    }

    /// One embedding vector for one string.
    func embed(_ parameter: JSONValue) async throws(SDKError) -> JSONValue {
        guard let text = parameter["inputString"]?.stringValue else { throw SDKError.invalidParameter("inputString must be a string") }
        let model = try await model(for: parameter["modelSpecifier"])
        let reply: JSONValue
        do {
            reply = try await backend.runnerJSON(model, path: "/v1/embeddings",
                                                 body: .object(JSONObject([("input", .string(text)), ("encoding_format", .string("float"))])),
                                                 parameters: runnerParameters(model), route: "ws:embedString")
        } catch {
            throw SDKError(error, doing: "Embedding")
        }
        guard let vector = reply["data"]?.arrayValue?.first?["embedding"] else {
            throw SDKError(title: "Embedding failed: the runner for \(model.id) sent no vector")
        }
        return .object(JSONObject([("embedding", vector)]))
    }
}
