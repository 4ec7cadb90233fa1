import Shared
import Synchronization

/// The load channels: `getOrLoad` (the SDKs' `model(key)`: the loaded instance, or a load) and
/// `loadModel` (`load_new_instance`), with progress packets every second while runner-manager loads.
extension SDKSession {
    /// `{identifier, loadConfigStack, loadTtlMs?}` → `alreadyLoaded`, or `startLoading`,
    /// (`unloadingOtherJITModel`), `loadProgress`…, `loadSuccess`.
    func getOrLoad(_ parameter: JSONValue, channel: SDKChannel) async throws(SDKError) {
        guard let identifier = parameter["identifier"]?.stringValue else { throw SDKError.invalidParameter("getOrLoad needs identifier, a string") }
        let model = try await model(named: identifier)
        // A chat model asked for on /embedding needs a runner started for embeddings: always a load.
        let embedsChatModel = namespace == .embedding && model.kind != .embedding
        if !embedsChatModel, let instance = await backend.instance(of: model) {
            return await packet(channel, "alreadyLoaded", [("info", info(instance))])
        }
        let stack = try SDKConfigStack(parameter["loadConfigStack"])
        var parameters = try stack.loadParameters(blockCount: model.metadata?.blockCount)
        if namespace == .embedding { parameters = LMStudioBackend.embeddingParameters(model, over: parameters) }
        let ttl = try ttlSeconds(parameter["loadTtlMs"], field: "loadTtlMs")
        await packet(channel, "startLoading", [("identifier", .string(model.id)), ("info", .object(LMStudioModelInfo.sdkInfo(model, type: namespace.modelType)))])
        let instance = try await load(model, identifier: nil, parameters: parameters, ttl: ttl, channel: channel, progressType: "loadProgress")
        await packet(channel, "loadSuccess", [("info", info(instance))])
    }

    /// `{modelKey, identifier?, ttlMs?, loadConfigStack}` → `resolved`, `progress`…, `success`.
    /// Here a model has one instance, so a model that is loaded already, or an identifier in use, is
    /// an error that says so (LM Studio would start a second copy).
    func loadModel(_ parameter: JSONValue, channel: SDKChannel) async throws(SDKError) {
        guard let key = parameter["modelKey"]?.stringValue else { throw SDKError.invalidParameter("loadModel needs modelKey, a string") }
        let model = try await model(named: key)
        let identifier = parameter["identifier"]?.stringValue
        if let identifier, let holder = backend.instances.model(identifiedAs: identifier) ?? backend.catalog.current.models.first(where: { $0.id == identifier && $0.id != model.id })?.id {
            throw SDKError(title: "A model instance with the identifier \"\(identifier)\" already exists",
                           cause: "\(holder) is known by that identifier", suggestion: "Choose another identifier")
        }
        if let loaded = await backend.instance(of: model) {
            throw SDKError(title: "A model instance with the identifier \"\(loaded.identifier)\" already exists",
                           cause: "Llama Runner runs one instance per model, and \(model.id) is loaded as \"\(loaded.identifier)\"",
                           suggestion: "Use the loaded instance (client.llm.model(\"\(loaded.identifier)\")), or unload it first")
        }
        let stack = try SDKConfigStack(parameter["loadConfigStack"])
        var parameters = try stack.loadParameters(blockCount: model.metadata?.blockCount)
        if namespace == .embedding { parameters = LMStudioBackend.embeddingParameters(model, over: parameters) }
        let ttl = try ttlSeconds(parameter["ttlMs"], field: "ttlMs")
        await packet(channel, "resolved", [("info", .object(LMStudioModelInfo.sdkInfo(model, type: namespace.modelType)))])
        let instance = try await load(model, identifier: identifier, parameters: parameters, ttl: ttl, channel: channel, progressType: "progress")
        await packet(channel, "success", [("info", info(instance))])
    }

    private func ttlSeconds(_ value: JSONValue?, field: String) throws(SDKError) -> Double? {
        guard let value, !value.isNull else { return nil }
        guard let ms = value.doubleValue, ms > 0 else { throw SDKError.invalidParameter("\(field): expected a positive number of milliseconds") }
        return ms / 1000
    }

    /// The load itself: progress packets while it runs (strictly rising, as the Python SDK ignores
    /// repeats), an `unloadingOtherJITModel` packet for each model the scheduler evicts to make room
    /// (getOrLoad only), and the client's cancel honoured.
    private func load(_ model: ResolvedModel, identifier: String?, parameters: JSONValue?, ttl: Double?, channel: SDKChannel,
                      progressType: String) async throws(SDKError) -> LMStudioInstances.Instance {
        let before = await backend.loadedInstances()
        let announced = Mutex<Set<String>>([model.id])
        let backend = self.backend
        // Models that were ready before this load and are not any more: the scheduler evicted them
        // to make room (looked at on every progress tick, and once more when the load is done).
        let announceEvictions: @Sendable () async -> Void = {
            guard progressType == "loadProgress" else { return }
            for other in before where !backend.relay.isReady(other.model.id) {
                let fresh = announced.withLock { $0.insert(other.model.id).inserted }
                if fresh { await self.packet(channel, "unloadingOtherJITModel", [("info", self.info(other))]) }
            }
        }
        await packet(channel, progressType, [("progress", .double(0))])
        let result: Result<LMStudioInstances.Instance, APIError> = await channel.cancellable(loop: backend.loop) {
            do throws(APIError) {
                return .success(try await backend.load(model, identifier: identifier, parameters: parameters, ttlSeconds: ttl) { fraction in
                    await self.packet(channel, progressType, [("progress", .double(min(0.99, fraction)))])
                    await announceEvictions()
                })
            } catch {
                return .failure(error)
            }
        }
        await announceEvictions()
        switch result {
        case .success(let instance): return instance
        case .failure(let error) where error.status.code == 499:
            throw SDKError(title: "The load of \(model.id) was cancelled")
        case .failure(let error) where error.status == .notFound:
            throw notFound(model.id, loaded: await loadedIdentifiers(), cause: error.message)
        case .failure(let error):
            throw SDKError(title: "Failed to load \(model.id)", cause: error.message,
                           suggestion: "See the runner's log on the dashboard, or GET /api/logs/\(model.id) on the dashboard API port")
        }
    }
}
