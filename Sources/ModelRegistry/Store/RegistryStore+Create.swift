import Glibc
import Shared

/// Ollama's model management over the registry: `create` (a new model over another's file with new
/// defaults, or over uploaded GGUF blobs), `copy`, and `delete`, which removes the files Llama Runner
/// downloaded or stored for the model — never a file of the user's own or of another tool's cache.
extension RegistryStore {
    func blobFolder() -> String? { appConfig.blobFolder(configDir: configDir) }

    /// The blob of `sha256:<64 hex>`, when it is stored.
    func blobPath(_ digest: String) -> String? {
        guard digest.hasPrefix("sha256:"), digest.count == 71, digest.dropFirst(7).allSatisfy(\.isHexDigit), let folder = blobFolder() else { return nil }
        let path = "\(folder)/sha256-\(digest.dropFirst(7).lowercased())"
        return FileStamp.of(path) == nil ? nil : path
    }

    /// The entry of a model as it stands: its configured entry, or one made from what the snapshot
    /// resolved (a model of another tool's cache), without aliases (they name the original).
    func entry(for model: ResolvedModel) -> JSONObject {
        if var configured = models["models"]?[model.id]?.objectValue {
            configured["aliases"] = nil
            return configured
        }
        var e = JSONObject([("model_path", .string(model.path)), ("llama_cpp_runtime", .string(model.runtime))])
        var parameters = JSONObject()
        let defaults = models["default_parameters"]?.objectValue ?? JSONObject()
        for (k, v) in model.parameters.objectValue?.entries ?? [] where defaults[k] != v { parameters[k] = v }
        e["parameters"] = .object(parameters)
        if let mmproj = model.mmproj { e["mmproj"] = .string(mmproj) }
        if model.kind != .chat { e["kind"] = .string(model.kind.rawValue) }
        if let system = model.systemPrompt { e["system_prompt"] = .string(system) }
        if let template = model.template { e["template"] = .string(template) }
        return e
    }

    func createModel(_ request: CreateModelRequest) throws(RPCFault) -> Revision {
        var entry: JSONObject
        if let from = request.from {
            guard let source = snapshot().resolve(from) else { throw RPCFault.notFound("model \"\(from)\" not found") }
            entry = self.entry(for: source)
            entry["source"] = .object(JSONObject([("type", .string(ModelSource.created.rawValue))]))
        } else if let files = request.files, !files.isEmpty {
            var paths: [(name: String, path: String)] = []
            for (name, digest) in files.sorted(by: { $0.key < $1.key }) {
                guard let path = blobPath(digest) else {
                    throw RPCFault.notFound("blob \(digest) (for \(name)) was not uploaded: send it first with POST /api/blobs/\(digest)")
                }
                paths.append((name, path))
            }
            let ggufs = paths.filter { $0.name.lowercased().hasSuffix(".gguf") || !$0.name.contains(".") }
            guard let model = ggufs.first(where: { !FileSelection.isProjector($0.name) }) else {
                throw RPCFault(code: RPCFault.validationCode, message: "files: no GGUF model file among \(files.keys.sorted().joined(separator: ", ")) (safetensors cannot be served here)")
            }
            entry = JSONObject([("model_path", .string(relativePath(model.path, from: configDir))), ("parameters", .object(JSONObject()))])
            if let projector = ggufs.first(where: { FileSelection.isProjector($0.name) }) {
                entry["mmproj"] = .string(relativePath(projector.path, from: configDir))
            }
            entry["source"] = .object(JSONObject([("type", .string(ModelSource.created.rawValue)),
                                                  ("files", .array(paths.map { .string(relativePath($0.path, from: configDir)) }))]))
        } else {
            throw RPCFault(code: RPCFault.validationCode, message: "neither 'from' or 'files' was specified")
        }
        if let overrides = request.parameters?.objectValue {
            var parameters = entry["parameters"]?.objectValue ?? JSONObject()
            for (k, v) in overrides.entries { parameters[k] = v }
            entry["parameters"] = .object(parameters)
        }
        if let system = request.system { entry["system_prompt"] = .string(system) }
        if let template = request.template { entry["template"] = .string(template) }
        entry["auto_discovered"] = .bool(false)
        entry["auto_update_model"] = .bool(false)
        return try put(request.id, entry)
    }

    func copyModel(_ request: CopyModelRequest) throws(RPCFault) -> Revision {
        guard let source = snapshot().resolve(request.source) else { throw RPCFault.notFound("model \"\(request.source)\" not found") }
        var entry = self.entry(for: source)
        entry["auto_discovered"] = .bool(false)
        return try put(request.destination, entry)
    }

    private func put(_ id: String, _ entry: JSONObject) throws(RPCFault) -> Revision {
        var doc = models
        var list = doc["models"]?.objectValue ?? JSONObject()
        list[id] = .object(entry)
        doc["models"] = .object(list)
        return try commit(models: doc)
    }

    func deleteModel(_ name: String) throws(RPCFault) -> DeleteModelResult {
        guard let model = snapshot().resolve(name) else { throw RPCFault.notFound("model '\(name)' not found") }
        guard let configured = models["models"]?[model.id]?.objectValue else {
            throw RPCFault(code: RPCFault.refusedCode, message: "model '\(model.id)' is in \(Self.owner(model.source))'s own cache (\(model.path)): Llama Runner never deletes another tool's files; remove it with that tool, or turn the cache off in paths.import")
        }
        let source = configured["source"]?["type"]?.stringValue.flatMap(ModelSource.init(rawValue:)) ?? .folder
        if source == .folder && configured["auto_discovered"]?.boolValue == true {
            throw RPCFault(code: RPCFault.refusedCode, message: "model '\(model.id)' is your file \(model.path) in a models folder: Llama Runner deletes only files it downloaded; delete the file yourself (discovery would find it again otherwise)")
        }
        let owned = (configured["source"]?["files"]?.arrayValue ?? []).compactMap(\.stringValue).map { resolvePath($0, configDir: configDir) }
        var doc = models
        var list = doc["models"]?.objectValue ?? JSONObject()
        list[model.id] = nil
        doc["models"] = .object(list)
        // A file another entry still points at stays.
        var used = Set<String>()
        for (_, e) in list.entries {
            for key in ["model_path", "mmproj"] { if let p = e[key]?.stringValue { used.insert(resolvePath(p, configDir: configDir)) } }
            for p in e["source"]?["files"]?.arrayValue ?? [] { if let s = p.stringValue { used.insert(resolvePath(s, configDir: configDir)) } }
        }
        let revision = try commit(models: doc)
        var deleted: [String] = []
        for file in owned where !used.contains(file) {
            if unlink(file) == 0 { deleted.append(file) }
        }
        return DeleteModelResult(revision: revision.revision, deletedFiles: deleted)
    }

    static func owner(_ source: ModelSource) -> String {
        switch source {
        case .ollama: "Ollama"
        case .lmstudio: "LM Studio"
        case .huggingface: "the Hugging Face hub cache"
        case .llamaCpp: "llama.cpp"
        default: "another tool"
        }
    }
}
