import Glibc
import Shared
import Synchronization

/// The registry's state: the last good `app_config.json` and `models_config.json`, the revision,
/// the metadata cache and the resolved snapshot. An actor, so edits, hand-edit reloads and discovery
/// apply one at a time: every write is validated whole, checked against the caller's revision,
/// backed up and replaced atomically, and a file that is invalid on disk never replaces a good one.
///
/// Its jobs run on a blocking thread of their own (`executor`), never on the event loop: every edit
/// reads, writes and fsyncs files, and the loop only awaits the result. Discovery's walk and GGUF
/// reads run on the shared pool outside the actor, so edits and reads go on while a scan runs.
actor RegistryStore {
    /// The thread the store's jobs run on (one per process: the stores of a test share it).
    static let executor = BlockingQueue(name: "registry-store")

    nonisolated var unownedExecutor: UnownedSerialExecutor { Self.executor.asUnownedSerialExecutor() }

    struct FileState {
        var stamp: FileStamp?
        var usingDefault = false
        var errors: [String] = []
        var warnings: [String] = []
    }

    struct CachedMetadata: Sendable {
        let stamp: FileStamp
        let result: Result<GGUFMetadata, GGUFError>
    }

    let files: ConfigFiles
    let logger: Logger
    private let onChange: @Sendable (String) -> Void
    /// What readers see without waiting for the actor: the documents and the typed app config in
    /// force, replaced whole on every new revision, so a read during a long commit (a discovery that
    /// adds 2,000 models) is answered at once with the revision before it.
    struct Published: Sendable {
        var documents: RegistryRPC.Documents.Result
        var appConfig: AppConfig
        var status: RegistryStatus
    }

    private let published: Mutex<Published>

    /// The documents in force, without waiting for an edit or discovery under way.
    nonisolated var publishedDocuments: RegistryRPC.Documents.Result { published.withLock { $0.documents } }
    /// The app config in force, likewise.
    nonisolated var publishedAppConfig: AppConfig { published.withLock { $0.appConfig } }
    /// The files' state, likewise (as of the last change the actor finished).
    nonisolated var publishedStatus: RegistryStatus { published.withLock { $0.status } }

    private(set) var app: JSONValue
    private(set) var models: JSONValue
    private(set) var appConfig: AppConfig
    private(set) var revision: String
    private var appState: FileState
    private var modelsState: FileState
    private var metadataCache: [String: CachedMetadata] = [:]
    /// The persistent cache (nil in tests that do not ask for one): loaded at start, written when changed.
    private let cacheFile: MetadataCacheFile?
    private var persisted: [String: MetadataCacheFile.Entry] = [:]
    private var persistedDirty = false
    private var cachedSnapshot: RegistrySnapshot?
    private(set) var lastDiscovery: DiscoveryReport?
    /// The discovery under way: a second request joins it instead of scanning again.
    private var discovery: Task<DiscoveryReport, Never>?

    var configDir: String { files.configDir }

    /// Loads both files. An invalid file (or a pair that contradicts itself) is a `ConfigError`
    /// listing every fault, so the service refuses to start with a message the user can act on.
    init(configDir: String, logger: Logger, cacheFile: MetadataCacheFile? = nil,
         onChange: @escaping @Sendable (String) -> Void) throws(ConfigError) {
        let files = ConfigFiles(configDir: configDir)
        AtomicFile.removeStaleTemporaries(in: configDir, for: ConfigFiles.appName)
        AtomicFile.removeStaleTemporaries(in: configDir, for: ConfigFiles.modelsName)
        var appState = FileState()
        var modelsState = FileState()
        var faults: [String] = []
        func load(_ name: String, _ fallback: JSONValue, _ state: inout FileState) -> JSONValue {
            state.stamp = FileStamp.of(files.path(name))
            switch files.read(name) {
            case .success(nil):
                state.usingDefault = true
                return fallback
            case .success(let (doc, warnings)?):
                state.warnings = warnings.map { "\(name): \($0)" }
                return doc
            case .failure(let issue):
                faults.append(issue.description)
                return fallback
            }
        }
        let app = load(ConfigFiles.appName, BuiltInConfig.app, &appState)
        let models = load(ConfigFiles.modelsName, BuiltInConfig.models, &modelsState)
        let issues = ConfigValidator.validate(app: app, models: models)
        faults += issues.filter { $0.severity == .error }.map(\.description)
        guard faults.isEmpty else { throw ConfigError(file: "", message: faults.joined(separator: "\n")) }
        for issue in issues where issue.severity == .warning {
            if issue.file == ConfigFiles.appName { appState.warnings.append(issue.description) } else { modelsState.warnings.append(issue.description) }
        }
        let typed: AppConfig
        do {
            typed = try AppConfig.from(app)
        } catch {
            throw ConfigError(file: ConfigFiles.appName, message: describeDecodingError(error))
        }
        for w in appState.warnings + modelsState.warnings { logger.warning(w) }
        self.revision = Self.revision(app, models)
        published = Mutex(Published(documents: .init(revision: Self.revision(app, models), app: app, models: models), appConfig: typed,
                                    status: Self.makeStatus(files, appState, modelsState, lastDiscovery: nil, revision: Self.revision(app, models),
                                                            modelCount: models["models"]?.objectValue?.count ?? 0)))
        self.appState = appState
        self.modelsState = modelsState
        self.files = files
        self.logger = logger
        self.onChange = onChange
        self.appConfig = typed
        self.app = app
        self.models = models
        self.cacheFile = cacheFile
        self.persisted = cacheFile?.load() ?? [:]
    }

    /// A content hash of both documents: the same content always has the same revision, across restarts.
    static func revision(_ app: JSONValue, _ models: JSONValue) -> String {
        FNV1a.hex(FNV1a.hash((JSONWriter.write(app, pretty: false) + "\u{0}" + JSONWriter.write(models, pretty: false)).utf8))
    }

    // MARK: Reading

    func snapshot() -> RegistrySnapshot {
        if let cachedSnapshot { return cachedSnapshot }
        let built = buildSnapshot()
        cachedSnapshot = built
        if persistedDirty, let cacheFile {
            do {
                try cacheFile.save(persisted)
                persistedDirty = false
            } catch {
                logger.warning("cannot write the metadata cache", ("path", cacheFile.path), ("error", "\(error)"))
            }
        }
        return built
    }

    func status() -> RegistryStatus {
        Self.makeStatus(files, appState, modelsState, lastDiscovery: lastDiscovery, revision: revision,
                        modelCount: models["models"]?.objectValue?.count ?? 0)
    }

    static func makeStatus(_ files: ConfigFiles, _ appState: FileState, _ modelsState: FileState, lastDiscovery: DiscoveryReport?,
                           revision: String, modelCount: Int) -> RegistryStatus {
        func describe(_ name: String, _ s: FileState) -> ConfigFileStatus {
            ConfigFileStatus(name: name, path: files.path(name), state: !s.errors.isEmpty ? .invalid : s.usingDefault ? .default : .ok,
                             errors: s.errors, warnings: s.warnings)
        }
        return RegistryStatus(revision: revision,
                              files: [describe(ConfigFiles.appName, appState), describe(ConfigFiles.modelsName, modelsState)],
                              lastDiscovery: lastDiscovery, modelCount: modelCount)
    }

    /// Replaces what readers see with the state in force now (after every change the actor makes).
    private func republish() {
        let current = Published(documents: .init(revision: revision, app: app, models: models), appConfig: appConfig, status: status())
        published.withLock { $0 = current }
    }

    /// Problems a health check should report (an invalid hand edit being ignored).
    func problems() -> [String] { appState.errors + modelsState.errors }

    func backups() -> [BackupInfo] { files.backups() }

    /// Both documents with their revision, read together.
    func documents() -> RegistryRPC.Documents.Result {
        RegistryRPC.Documents.Result(revision: revision, app: app, models: models)
    }

    func modelInfo(_ name: String) throws(RPCFault) -> JSONValue {
        guard let model = resolve(name) else { throw RPCFault.notFound("model \"\(name)\" is not defined") }
        switch metadata(model.path) {
        case .success(let meta)?:
            return .object(JSONObject([("gguf_version", .int(meta.version)), ("tensor_count", .int(meta.tensorCount)),
                                       ("parameter_count", .int(meta.parameterCount)), ("metadata", .object(meta.entries))]))
        case .failure(let error)?:
            throw RPCFault(code: RPCFault.unavailableCode, message: error.description)
        case nil:
            throw RPCFault(code: RPCFault.unavailableCode, message: "model file \(model.path) is missing")
        }
    }

    /// A model by name, as every service resolves one (`RegistrySnapshot.resolve`).
    func resolve(_ name: String) -> ResolvedModel? { snapshot().resolve(name) }

    // MARK: Edits

    private func checkRevision(_ expected: String?) throws(RPCFault) {
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
        guard let info = ConfigFiles.parseBackupName(request.name),
              let bytes = readFileBytes("\(files.backupsDir)/\(request.name)") else {
            throw RPCFault.notFound("no backup named \"\(request.name)\" (see registry.backups)")
        }
        let doc: JSONValue
        do {
            doc = try JSONParser.parse(bytes, lenientEscapes: true).0
        } catch {
            throw RPCFault(code: RPCFault.validationCode, message: "\(request.name): invalid JSON: \(error)")
        }
        return info.file == ConfigFiles.appName ? try commit(app: doc) : try commit(models: doc)
    }

    /// Validates the candidate pair, writes what changed (backup first), and publishes the revision.
    @discardableResult
    private func commit(app newApp: JSONValue? = nil, models newModels: JSONValue? = nil) throws(RPCFault) -> Revision {
        let candidateApp = newApp ?? app
        let candidateModels = newModels ?? models
        let errors = ConfigValidator.validate(app: candidateApp, models: candidateModels).filter { $0.severity == .error }
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
    private func runtimeErrors(_ typed: AppConfig) -> [String] {
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

    private func apply(app newApp: JSONValue, models newModels: JSONValue, typed: AppConfig) {
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

    // MARK: Hand edits

    /// Picks up files edited (or removed) by hand. An invalid edit keeps the last good config and is
    /// reported in `status` and health until the file is fixed.
    func checkForHandEdits() {
        defer { republish() }  // the files' errors and warnings change here too
        var candidateApp = app
        var candidateModels = models
        var changed: [String] = []
        var unparsable: [String: String] = [:]
        for name in [ConfigFiles.appName, ConfigFiles.modelsName] {
            let isApp = name == ConfigFiles.appName
            let stamp = FileStamp.of(files.path(name))
            guard stamp != (isApp ? appState.stamp : modelsState.stamp) else { continue }
            if isApp { appState.stamp = stamp } else { modelsState.stamp = stamp }
            changed.append(name)
            switch files.read(name) {
            case .success(nil):
                if isApp { candidateApp = BuiltInConfig.app } else { candidateModels = BuiltInConfig.models }
            case .success(let (doc, _)?):
                if isApp { candidateApp = doc } else { candidateModels = doc }
            case .failure(let issue):
                unparsable[name] = issue.description
            }
        }
        guard !changed.isEmpty else { return }
        for (name, message) in unparsable {
            setErrors(name, [message])
            logger.warning("ignoring the hand edit of \(name): \(message); the last good configuration stays in force")
        }
        let parsed = changed.filter { unparsable[$0] == nil }
        guard !parsed.isEmpty else { return }
        let issues = ConfigValidator.validate(app: candidateApp, models: candidateModels)
        let errors = issues.filter { $0.severity == .error }
        guard errors.isEmpty, let typed = try? AppConfig.from(candidateApp) else {
            for name in parsed {
                // An edit of one file can break the other (a runtime removed from app_config.json):
                // the edited file carries the errors either way.
                let mine = errors.filter { $0.file == name }
                let shown = (mine.isEmpty ? errors : mine).map(\.description)
                setErrors(name, shown.isEmpty ? ["\(name): the edited configuration cannot be used"] : shown)
                logger.warning("ignoring the hand edit of \(name): \(shown.joined(separator: "; ")); the last good configuration stays in force")
            }
            return
        }
        for name in parsed {
            let isApp = name == ConfigFiles.appName
            let warnings = issues.filter { $0.severity == .warning && $0.file == name }.map(\.description)
            let usingDefault = access(files.path(name), F_OK) != 0
            if isApp {
                appState.errors = []
                appState.warnings = warnings
                appState.usingDefault = usingDefault
            } else {
                modelsState.errors = []
                modelsState.warnings = warnings
                modelsState.usingDefault = usingDefault
            }
        }
        if candidateApp != app || candidateModels != models {
            logger.info("picked up a hand edit of the configuration")
            apply(app: candidateApp, models: candidateModels, typed: typed)
        }
    }

    private func setErrors(_ name: String, _ errors: [String]) {
        if name == ConfigFiles.appName { appState.errors = errors } else { modelsState.errors = errors }
    }

    // MARK: Discovery

    /// Scans the models folders and merges new files into `models_config.json` (saved with a backup).
    /// One at a time: a request while a scan runs gets that scan's report.
    func discover() async -> DiscoveryReport {
        if let discovery { return await discovery.value }
        let task = Task { await self.scanAndMerge() }
        discovery = task
        let report = await task.value
        discovery = nil
        return report
    }

    /// What a scan found, read off the actor: the files, and the headers of those not cached yet.
    struct Scan: Sendable {
        let found: [FoundFile]
        let problems: [String]
        let read: [String: CachedMetadata]
    }

    private func scanAndMerge() async -> DiscoveryReport {
        let folders = appConfig.modelsDirs.map { resolvePath($0, configDir: configDir) }
        var known: [String: FileStamp] = persisted.mapValues(\.stamp)
        for (path, cached) in metadataCache { known[path] = cached.stamp }
        let knownStamps = known
        let scan = await BlockingPool.shared.run { () -> Scan in
            let (found, problems) = ModelScanner.scan(folders)
            var read: [String: CachedMetadata] = [:]
            for file in found where !file.isProjector {
                guard let stamp = FileStamp.of(file.path), knownStamps[file.path] != stamp else { continue }
                let result = Result<GGUFMetadata, GGUFError> { () throws(GGUFError) -> GGUFMetadata in try GGUFReader.read(path: file.path) }
                read[file.path] = CachedMetadata(stamp: stamp, result: result)
            }
            return Scan(found: found, problems: problems, read: read)
        }
        for (path, cached) in scan.read {
            metadataCache[path] = cached
            if case .success(let meta) = cached.result {
                persisted[path] = MetadataCacheFile.Entry(stamp: cached.stamp, value: meta.cacheValue)
                persistedDirty = true
            }
        }
        let (found, problems) = (scan.found, scan.problems)
        var unreadable: [String] = []
        let runtime = appConfig.runtimes.filter { $0.value.kind == .llamaServer }.keys.sorted().first ?? "llama-server"
        let merge = DiscoveryMerge(configDir: configDir, runtime: runtime)
        let outcome = merge.merge(models, found: found, metadata: { path in
            switch metadata(path) {
            case .success(let meta)?: return meta.summary
            case .failure(let error)?:
                unreadable.append(error.description)
                return nil
            case nil: return nil
            }
        }, exists: { access($0, F_OK) == 0 })
        if outcome.document != models {
            do {
                try commit(models: outcome.document)
                logger.info("discovery updated models_config.json", ("added", outcome.added.joined(separator: ",")),
                            ("updated", outcome.updated.joined(separator: ",")))
            } catch {
                logger.error("discovery could not save models_config.json: \(error)")
            }
        }
        for problem in unreadable + problems { logger.warning("discovery: \(problem)") }
        // Metadata or file states may have changed even when the document did not.
        cachedSnapshot = nil
        let report = DiscoveryReport(revision: revision, added: outcome.added, updated: outcome.updated, missing: outcome.missing,
                                     unreadable: unreadable + problems, scannedFiles: found.count)
        lastDiscovery = report
        republish()
        return report
    }

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

    private func buildSnapshot() -> RegistrySnapshot {
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
            resolved.append(ResolvedModel(
                id: id, aliases: (entry["aliases"]?.arrayValue ?? []).compactMap(\.stringValue),
                displayName: entry["display_name"]?.stringValue, path: path, runtime: runtimeName, runtimeKind: runtime.kind,
                runtimePath: runtimePath, parameters: .object(parameters), kind: kind, ttlSeconds: entry["ttl_seconds"]?.intValue,
                unlisted: entry["unlisted"]?.boolValue ?? false,
                mmproj: entry["mmproj"]?.stringValue.map { resolvePath($0, configDir: configDir) },
                autoDiscovered: entry["auto_discovered"]?.boolValue ?? false, autoUpdateModel: entry["auto_update_model"]?.boolValue ?? false,
                state: state, error: error, metadata: meta))
        }
        var defaultModel = models["default_model"]?.stringValue
        if let name = defaultModel, !resolved.contains(where: { $0.id == name }) {
            defaultModel = resolved.first { $0.aliases.contains(name) }?.id
        }
        return RegistrySnapshot(revision: revision, defaultModel: defaultModel, models: resolved)
    }
}

/// Whether `path` is a regular file this process may execute (a directory passes `access(X_OK)`).
func isExecutableFile(_ path: String) -> Bool {
    var info = stat()
    return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFREG && access(path, X_OK) == 0
}
