import Glibc
import Shared

/// Edits: checked against the caller's revision, validated whole with the other file, backed up and
/// written atomically, then applied and published.
extension RegistryStore {
    // MARK: Edits

    func checkRevision(_ expected: String?) throws(RPCFault) {
        if let expected, expected != revision {
            throw RPCFault(code: RPCFault.conflictCode,
                           message: "the configuration changed since revision \(expected); the current revision is \(revision): reload and retry",
                           data: ["current": revision])
        }
    }

    func updateModel(_ edit: ModelEdit) throws(RPCFault) -> Revision {
        try checkRevision(edit.revision)
        guard let entry = edit.entry else { throw RPCFault.invalidParams("registry.updateModel: entry is required") }
        var doc = models
        var list = doc["models"]?.objectValue ?? JSONObject()
        list[edit.id] = entry
        doc["models"] = .object(list)
        return try commit(models: doc)
    }

    func removeModel(_ edit: ModelEdit) throws(RPCFault) -> Revision {
        try checkRevision(edit.revision)
        var doc = models
        var list = doc["models"]?.objectValue ?? JSONObject()
        guard list[edit.id] != nil else { throw RPCFault.notFound("model \"\(edit.id)\" is not defined") }
        list[edit.id] = nil
        doc["models"] = .object(list)
        return try commit(models: doc)
    }

    func setDefaultModel(_ edit: DocumentEdit) throws(RPCFault) -> Revision {
        try checkRevision(edit.revision)
        var doc = models
        doc["default_model"] = edit.value
        return try commit(models: doc)
    }

    func updateDefaultParameters(_ edit: DocumentEdit) throws(RPCFault) -> Revision {
        try checkRevision(edit.revision)
        var doc = models
        doc["default_parameters"] = edit.value
        return try commit(models: doc)
    }

    func updateApp(_ edit: DocumentEdit) throws(RPCFault) -> Revision {
        try checkRevision(edit.revision)
        return try commit(app: edit.value)
    }

    func restore(_ request: RestoreRequest) throws(RPCFault) -> Revision {
        try checkRevision(request.revision)
        let (file, doc) = try readBackup(request.name)
        return file == ConfigFiles.appName ? try commit(app: doc) : try commit(models: doc)
    }

    func backup(_ name: String) throws(RPCFault) -> RegistryRPC.Backup.Result {
        let (file, doc) = try readBackup(name)
        return .init(name: name, file: file, document: doc)
    }

    /// A backup's file and document; only names of `backups/` itself (`ConfigFiles.parseBackupName`).
    private func readBackup(_ name: String) throws(RPCFault) -> (String, JSONValue) {
        guard let info = ConfigFiles.parseBackupName(name), let bytes = readFileBytes("\(files.backupsDir)/\(name)") else {
            throw RPCFault.notFound("no backup named \"\(name)\" (see registry.backups)")
        }
        do {
            return (info.file, try JSONParser.parse(bytes, lenientEscapes: true).0)
        } catch {
            throw RPCFault(code: RPCFault.validationCode, message: "\(name): invalid JSON: \(error)")
        }
    }

    /// Validates the candidate pair, writes what changed (backup first), and publishes the revision.
    @discardableResult
    func commit(app newApp: JSONValue? = nil, models newModels: JSONValue? = nil) throws(RPCFault) -> Revision {
        let candidateApp = newApp ?? app
        let candidateModels = newModels ?? models
        var errors = ConfigValidator.validate(app: candidateApp, models: candidateModels).filter { $0.severity == .error }
        if errors.isEmpty { errors = pinnedMemoryIssues(app: candidateApp, models: candidateModels) }
        if let first = errors.first {
            throw RPCFault(code: RPCFault.validationCode, message: first.description,
                           data: ["errors": errors.map(\.description).joined(separator: "\n")])
        }
        let typed: AppConfig
        do {
            typed = try AppConfig.from(candidateApp)
        } catch {
            throw RPCFault(code: RPCFault.validationCode, message: "app_config.json: \(describeDecodingError(error))")
        }
        if newApp != nil {
            let runtimeErrors = runtimeErrors(typed)
            if let first = runtimeErrors.first {
                throw RPCFault(code: RPCFault.validationCode, message: first, data: ["errors": runtimeErrors.joined(separator: "\n")])
            }
        }
        do {
            if let newApp, newApp != app || appState.usingDefault {
                try files.write(ConfigFiles.appName, newApp)
                appState = FileState(stamp: FileStamp.of(files.path(ConfigFiles.appName)))
            }
            if let newModels, newModels != models || modelsState.usingDefault {
                try files.write(ConfigFiles.modelsName, newModels)
                modelsState = FileState(stamp: FileStamp.of(files.path(ConfigFiles.modelsName)))
            }
        } catch {
            throw RPCFault(code: RPCFault.internalErrorCode, message: "cannot write the configuration: \(error)")
        }
        apply(app: candidateApp, models: candidateModels, typed: typed)
        return Revision(revision: revision)
    }

    /// What an edit may point at: every runtime it adds or re-points must be an executable file (a
    /// path, relative to the config directory, or a name found on PATH or in the project's install),
    /// so no edit (a dashboard's, a hostile page's) can make runner-manager start something else or
    /// nothing. Runtimes the edit leaves as they are are not re-checked (`launcher check` reports those).
    func runtimeErrors(_ typed: AppConfig) -> [String] {
        typed.runtimes.sorted { $0.key < $1.key }.compactMap { name, runtime in
            if appConfig.runtimes[name]?.path == runtime.path { return nil }
            let path = runtime.path.contains("/") ? resolvePath(runtime.path, configDir: configDir) : RuntimeLocator.locate(runtime.path)
            guard let path, isExecutableFile(path) else {
                return "app_config.json: runtimes.\(name).path: \"\(runtime.path)\" is not an executable file" +
                    (runtime.path.contains("/") ? "" : " on PATH or in the project's install")
            }
            return nil
        }
    }

    func apply(app newApp: JSONValue, models newModels: JSONValue, typed: AppConfig) {
        app = newApp
        models = newModels
        appConfig = typed
        cachedSnapshot = nil
        let newRevision = Self.revision(newApp, newModels)
        let changed = newRevision != revision
        revision = newRevision
        // Readers see the new documents before anyone is told of them.
        republish()
        if changed { onChange(newRevision) }
    }
}

/// Whether `path` is a regular file this process may execute (a directory passes `access(X_OK)`).
func isExecutableFile(_ path: String) -> Bool {
    var info = stat()
    return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFREG && access(path, X_OK) == 0
}
