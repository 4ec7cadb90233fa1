import Shared

/// Pinned models are never evicted, so together they must fit the memory budget: a set that cannot
/// is refused when it is written (an edit, a hand edit), naming the models, their estimates and the
/// budget. Estimates come from the GGUF metadata (cached), as runner-manager computes them.
extension RegistryStore {
    func pinnedMemoryIssues(app: JSONValue, models: JSONValue) -> [ConfigIssue] {
        guard let entries = models["models"]?.objectValue else { return [] }
        let pinned = entries.entries.filter { $0.value["pinned"]?.boolValue == true }
        // A single model larger than the budget still runs alone: only a set can be refused.
        guard pinned.count >= 2 else { return [] }
        let defaults = models["default_parameters"]?.objectValue ?? JSONObject()
        let runtimes = (try? AppConfig.from(app))?.runtimes ?? AppConfig.defaultRuntimes
        var sizes: [(id: String, bytes: Int)] = []
        for (id, entry) in pinned {
            let path = resolvePath(entry["model_path"]?.stringValue ?? "", configDir: configDir)
            let runtime = runtimes[entry["llama_cpp_runtime"]?.stringValue ?? "llama-server"]
            if runtime?.kind == .whisperServer {
                sizes.append((id, ModelMemory.estimate(metadata: nil, parameters: .null, whisperFileSize: FileStamp.of(path)?.size ?? 0)))
                continue
            }
            var parameters = defaults
            for (k, v) in entry["parameters"]?.objectValue?.entries ?? [] { parameters[k] = v }
            let meta: ModelMetadata? = if case .success(let m)? = metadata(path) { m.summary } else { nil }
            sizes.append((id, ModelMemory.estimate(metadata: meta, parameters: .object(parameters))))
        }
        let budget = ModelMemory.budget(app["limits"]?["memory_budget"] ?? AppConfig.Limits().memoryBudget)
        let total = sizes.reduce(0) { $0 + $1.bytes }
        guard total > budget else { return [] }
        let list = sizes.sorted { $0.id < $1.id }.map { "\($0.id) (\(ModelMemory.gigabytes($0.bytes)))" }.joined(separator: ", ")
        return [ConfigIssue(file: ConfigFiles.modelsName, path: "models",
                            message: "the pinned models \(list) need \(ModelMemory.gigabytes(total)) together but limits.memory_budget is \(ModelMemory.gigabytes(budget)): unpin some or raise the budget",
                            severity: .error)]
    }
}
