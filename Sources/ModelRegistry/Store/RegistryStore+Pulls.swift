import Shared

/// Models that pulls add.
extension RegistryStore {
    /// Registers a pulled model: its entry (replacing one of the same id: a pull again), and any entry
    /// discovery made meanwhile for the same file removed, so the file has one entry. Committed as
    /// every edit: validated, backed up, written atomically.
    func registerPulled(id: String, entry: JSONValue, files: [String]) throws(RPCFault) {
        var doc = models
        var list = doc["models"]?.objectValue ?? JSONObject()
        if let target = files.first {
            for (other, e) in list.entries where other != id && e["auto_discovered"]?.boolValue == true {
                if let p = e["model_path"]?.stringValue, resolvePath(p, configDir: configDir) == target { list[other] = nil }
            }
        }
        list[id] = entry
        doc["models"] = .object(list)
        try commit(models: doc)
    }
}
