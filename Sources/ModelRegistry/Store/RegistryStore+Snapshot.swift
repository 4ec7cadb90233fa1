import Glibc
import Shared

/// GGUF metadata (cached by file stamp, in memory and on disk) and the resolved snapshot.
extension RegistryStore {
    // MARK: Metadata and snapshot

    /// The file's metadata, cached by path, size and modification time; nil when there is no file.
    func metadata(_ path: String) -> Result<GGUFMetadata, GGUFError>? {
        guard let stamp = FileStamp.of(path) else {
            metadataCache[path] = nil
            if persisted.removeValue(forKey: path) != nil { persistedDirty = true }
            return nil
        }
        if let cached = metadataCache[path], cached.stamp == stamp { return cached.result }
        if let saved = persisted[path], saved.stamp == stamp, let meta = GGUFMetadata(cacheValue: saved.value) {
            metadataCache[path] = CachedMetadata(stamp: stamp, result: .success(meta))
            return .success(meta)
        }
        let result: Result<GGUFMetadata, GGUFError>
        do {
            let meta = try GGUFReader.read(path: path)
            result = .success(meta)
            persisted[path] = MetadataCacheFile.Entry(stamp: stamp, value: meta.cacheValue)
            persistedDirty = true
        } catch {
            result = .failure(error)
        }
        metadataCache[path] = CachedMetadata(stamp: stamp, result: result)
        return result
    }

    /// The snapshot's revision: the documents' revision, and with models from other tools' caches a
    /// hash of those too, so services that compare revisions see a cache change as a change. (Edits
    /// are checked against the documents' revision alone.)
    var snapshotRevision: String {
        guard !imported.isEmpty else { return revision }
        let key = imported.map { "\($0.id)|\($0.path)|\($0.mmproj ?? "")|\($0.parameters)" }.joined(separator: "\n")
        return revision + "." + FNV1a.hex(FNV1a.hash(key.utf8))
    }

    /// The models of other tools' caches, after the configured ones: one whose name or file a
    /// configured entry already has is left to that entry (a user's edit of an imported model is a
    /// configured entry of the same name).
    func importedModels(defaults: JSONObject, taken: [ResolvedModel]) -> [ResolvedModel] {
        let names = Set(taken.flatMap { [$0.id] + $0.aliases })
        let paths = Set(taken.map(\.path))
        let runtimeName = appConfig.runtimes.filter { $0.value.kind == .llamaServer }.keys.sorted().first ?? "llama-server"
        let runtime = appConfig.runtimes[runtimeName] ?? AppConfig.Runtime(kind: .llamaServer, path: runtimeName)
        let runtimePath = runtime.path.contains("/") ? resolvePath(runtime.path, configDir: configDir) : runtime.path
        return imported.filter { !names.contains($0.id) && !paths.contains($0.path) }.compactMap { m in
            var parameters = defaults
            for (k, v) in m.parameters.entries { parameters[k] = v }
            var state = ModelFileState.available
            var error: String?
            var meta: ModelMetadata?
            switch metadata(m.path) {
            case .success(let g)?: meta = g.summary
            case .failure(let e)?: state = .unreadable; error = e.message
            case nil: return nil  // gone since the scan
            }
            if meta?.isEmbeddingModel == true, parameters["embeddings"] == nil { parameters["embeddings"] = .bool(true) }
            var model = ResolvedModel(id: m.id, aliases: [], displayName: nil, path: m.path, runtime: runtimeName, runtimeKind: .llamaServer,
                                      runtimePath: runtimePath, parameters: .object(parameters), kind: meta?.isEmbeddingModel == true ? .embedding : .chat,
                                      ttlSeconds: nil, unlisted: false, mmproj: m.mmproj, autoDiscovered: true, autoUpdateModel: false,
                                      state: state, error: error, metadata: meta)
            model.source = m.source
            model.systemPrompt = m.systemPrompt
            model.template = m.template
            return model
        }
    }

    func buildSnapshot() -> RegistrySnapshot {
        let defaults = models["default_parameters"]?.objectValue ?? JSONObject()
        var resolved: [ResolvedModel] = []
        for (id, entry) in (models["models"]?.objectValue ?? JSONObject()).entries {
            let path = resolvePath(entry["model_path"]?.stringValue ?? "", configDir: configDir)
            let runtimeName = entry["llama_cpp_runtime"]?.stringValue ?? "llama-server"
            let runtime = appConfig.runtimes[runtimeName] ?? AppConfig.Runtime(kind: .llamaServer, path: runtimeName)
            let runtimePath = runtime.path.contains("/") ? resolvePath(runtime.path, configDir: configDir) : runtime.path
            // default_parameters are llama-server flags: whisper-server runners take only their own.
            var parameters = runtime.kind == .whisperServer ? JSONObject() : defaults
            for (k, v) in entry["parameters"]?.objectValue?.entries ?? [] { parameters[k] = v }
            var state = ModelFileState.available
            var error: String?
            var meta: ModelMetadata?
            if runtime.kind == .whisperServer {
                switch WhisperModelFile.check(path) {
                case .missing: state = .missing; error = "no file at \(path)"
                case .invalid(let why): state = .unreadable; error = why
                case .valid: break
                }
            } else {
                switch metadata(path) {
                case .success(let m)?: meta = m.summary
                case .failure(let e)?:
                    state = .unreadable
                    error = e.message
                case nil:
                    state = .missing
                    error = "no file at \(path)"
                }
            }
            // The validator admits only ModelKind's names.
            let kind = entry["kind"]?.stringValue.flatMap(ModelKind.init(rawValue:))
                ?? (runtime.kind == .whisperServer ? .audio : meta?.isEmbeddingModel == true ? .embedding : .chat)
            var model = ResolvedModel(
                id: id, aliases: (entry["aliases"]?.arrayValue ?? []).compactMap(\.stringValue),
                displayName: entry["display_name"]?.stringValue, path: path, runtime: runtimeName, runtimeKind: runtime.kind,
                runtimePath: runtimePath, parameters: .object(parameters), kind: kind, ttlSeconds: entry["ttl_seconds"]?.intValue,
                pinned: entry["pinned"]?.boolValue ?? false, preload: entry["preload"]?.boolValue ?? false,
                unlisted: entry["unlisted"]?.boolValue ?? false,
                mmproj: entry["mmproj"]?.stringValue.map { resolvePath($0, configDir: configDir) },
                autoDiscovered: entry["auto_discovered"]?.boolValue ?? false, autoUpdateModel: entry["auto_update_model"]?.boolValue ?? false,
                state: state, error: error, metadata: meta)
            model.source = entry["source"]?["type"]?.stringValue.flatMap(ModelSource.init(rawValue:)) ?? .folder
            model.systemPrompt = entry["system_prompt"]?.stringValue
            model.template = entry["template"]?.stringValue
            model.devices = (entry["devices"]?.arrayValue ?? []).compactMap(\.stringValue)
            model.minContextSize = entry["min_ctx_size"]?.intValue
            model.allowCPUFallback = entry["allow_cpu_fallback"]?.boolValue ?? false
            resolved.append(model)
        }
        resolved += importedModels(defaults: defaults, taken: resolved)
        var defaultModel = models["default_model"]?.stringValue
        if let name = defaultModel, !resolved.contains(where: { $0.id == name }) {
            defaultModel = resolved.first { $0.aliases.contains(name) }?.id
        }
        return RegistrySnapshot(revision: snapshotRevision, defaultModel: defaultModel, models: resolved)
    }
}
