import Shared

/// Merges what a scan found into `models_config.json`, as a pure function: existing entries are never
/// changed (except `model_path` of an entry with `auto_update_model: true` whose file moved), new
/// files get new entries, and entries whose file is gone are reported as missing, not removed.
struct DiscoveryMerge {
    struct Outcome {
        var document: JSONValue
        var added: [String] = []
        var updated: [String] = []
        var missing: [String] = []
    }

    let configDir: String
    /// The runtime new entries use (the first of kind llama-server).
    let runtime: String

    /// `metadata` answers for each found model file: its summary, or nil when unreadable (skipped).
    func merge(_ document: JSONValue, found: [FoundFile], metadata: (String) -> ModelMetadata?,
               exists: (String) -> Bool) -> Outcome {
        var outcome = Outcome(document: document)
        var models = document["models"]?.objectValue ?? JSONObject()
        let projectors = Dictionary(grouping: found.filter(\.isProjector), by: \.folder)
        var claimed = Set<String>()
        var taken = Set(models.keys)
        for (_, entry) in models.entries {
            if let path = entry["model_path"]?.stringValue { claimed.insert(resolvePath(path, configDir: configDir)) }
            for alias in entry["aliases"]?.arrayValue ?? [] { if let a = alias.stringValue { taken.insert(a) } }
        }
        var unclaimed = found.filter { !$0.isProjector && !claimed.contains($0.path) }

        // Entries whose file moved, with auto_update_model: true, follow it (same file name or same id).
        for (id, entry) in models.entries where entry["auto_update_model"]?.boolValue == true {
            guard let path = entry["model_path"]?.stringValue, !exists(resolvePath(path, configDir: configDir)) else { continue }
            let oldName = path.split(separator: "/").last.map(String.init) ?? path
            if let i = unclaimed.firstIndex(where: { $0.path.hasSuffix("/" + oldName) || ModelScanner.id(fromStem: $0.stem) == id }) {
                var updated = entry
                updated["model_path"] = .string(relativePath(unclaimed[i].path, from: configDir))
                models[id] = updated
                outcome.updated.append(id)
                unclaimed.remove(at: i)
            }
        }

        for file in unclaimed {
            guard let meta = metadata(file.path) else { continue }
            var id = ModelScanner.id(fromStem: file.stem)
            if taken.contains(id) {
                var n = 2
                while taken.contains("\(id)-\(n)") { n += 1 }
                id = "\(id)-\(n)"
            }
            taken.insert(id)
            var parameters = JSONObject()
            if meta.isEmbeddingModel { parameters["embeddings"] = .bool(true) }
            var entry = JSONObject()
            entry["model_path"] = .string(relativePath(file.path, from: configDir))
            entry["llama_cpp_runtime"] = .string(runtime)
            entry["parameters"] = .object(parameters)
            entry["auto_discovered"] = .bool(true)
            entry["auto_update_model"] = .bool(false)
            if meta.isEmbeddingModel { entry["kind"] = .string("embedding") }
            if let projector = projectors[file.folder]?.first {
                entry["mmproj"] = .string(relativePath(projector.path, from: configDir))
            }
            models[id] = .object(entry)
            outcome.added.append(id)
        }

        for (id, entry) in models.entries {
            if let path = entry["model_path"]?.stringValue, !exists(resolvePath(path, configDir: configDir)) {
                outcome.missing.append(id)
            }
        }
        if !outcome.added.isEmpty || !outcome.updated.isEmpty {
            var doc = document.objectValue ?? JSONObject()
            doc["models"] = .object(models)
            outcome.document = .object(doc)
        }
        return outcome
    }
}
