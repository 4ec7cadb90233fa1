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
    let onChange: @Sendable (String) -> Void
    /// What readers see without waiting for the actor: the documents and the typed app config in
    /// force, replaced whole on every new revision, so a read during a long commit (a discovery that
    /// adds 2,000 models) is answered at once with the revision before it.
    struct Published: Sendable {
        var documents: RegistryRPC.Documents.Result
        var appConfig: AppConfig
        var status: RegistryStatus
    }

    let published: Mutex<Published>

    /// The documents in force, without waiting for an edit or discovery under way.
    nonisolated var publishedDocuments: RegistryRPC.Documents.Result { published.withLock { $0.documents } }
    /// The app config in force, likewise.
    nonisolated var publishedAppConfig: AppConfig { published.withLock { $0.appConfig } }
    /// The files' state, likewise (as of the last change the actor finished).
    nonisolated var publishedStatus: RegistryStatus { published.withLock { $0.status } }

    var app: JSONValue
    var models: JSONValue
    var appConfig: AppConfig
    var revision: String
    var appState: FileState
    var modelsState: FileState
    var metadataCache: [String: CachedMetadata] = [:]
    /// The persistent cache (nil in tests that do not ask for one): loaded at start, written when changed.
    let cacheFile: MetadataCacheFile?
    var persisted: [String: MetadataCacheFile.Entry] = [:]
    var persistedDirty = false
    var cachedSnapshot: RegistrySnapshot?
    var lastDiscovery: DiscoveryReport?
    /// The discovery under way: a second request joins it instead of scanning again.
    var discovery: Task<DiscoveryReport, Never>?
    /// Models in other tools' caches (`CacheImports`), found by the last discovery: in the snapshot,
    /// never in `models_config.json`.
    var imported: [ImportedModel] = []

    nonisolated var configDir: String { files.configDir }

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
    func republish() {
        let current = Published(documents: .init(revision: revision, app: app, models: models), appConfig: appConfig, status: status())
        published.withLock { $0 = current }
    }

    /// Problems a health check should report (an invalid hand edit being ignored).
    func problems() -> [String] { appState.errors + modelsState.errors }

    func backups() -> [BackupInfo] { files.backups() }

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
}
