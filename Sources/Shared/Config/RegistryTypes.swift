/// The summary of a model file's GGUF metadata that the registry shares with the other services.
public struct ModelMetadata: Codable, Sendable, Equatable {
    public var architecture: String?
    public var name: String?
    public var sizeLabel: String?
    /// Summed from the tensor shapes.
    public var parameterCount: Int
    /// `general.file_type`, and its llama.cpp name (Q4_K_M, Q8_0, …).
    public var fileType: Int?
    public var quantization: String?
    public var contextLength: Int?
    public var embeddingLength: Int?
    public var blockCount: Int?
    public var headCount: Int?
    public var headCountKV: Int?
    public var keyLength: Int?
    public var valueLength: Int?
    public var hasChatTemplate: Bool
    public var tokenizerModel: String?
    /// An encoder or a model with a pooling type: served with `--embeddings`.
    public var isEmbeddingModel: Bool
    public var fileSize: Int
    public var ggufVersion: Int
    /// Tensor bytes in the repeating layers (`blk.N.…`, what `--n-gpu-layers` offloads) and in the whole
    /// first file; the rest (token embeddings, output) stays with the last layer's device.
    public var layerBytes: Int?
    public var dataBytes: Int?
    /// Tokens in the vocabulary (the logits buffer is vocabulary × batch floats).
    public var vocabularySize: Int?

    public init(architecture: String?, name: String?, sizeLabel: String?, parameterCount: Int, fileType: Int?, quantization: String?,
                contextLength: Int?, embeddingLength: Int?, blockCount: Int?, headCount: Int?, headCountKV: Int?, keyLength: Int?,
                valueLength: Int?, hasChatTemplate: Bool, tokenizerModel: String?, isEmbeddingModel: Bool, fileSize: Int, ggufVersion: Int,
                layerBytes: Int? = nil, dataBytes: Int? = nil, vocabularySize: Int? = nil) {
        self.layerBytes = layerBytes
        self.dataBytes = dataBytes
        self.vocabularySize = vocabularySize
        self.architecture = architecture
        self.name = name
        self.sizeLabel = sizeLabel
        self.parameterCount = parameterCount
        self.fileType = fileType
        self.quantization = quantization
        self.contextLength = contextLength
        self.embeddingLength = embeddingLength
        self.blockCount = blockCount
        self.headCount = headCount
        self.headCountKV = headCountKV
        self.keyLength = keyLength
        self.valueLength = valueLength
        self.hasChatTemplate = hasChatTemplate
        self.tokenizerModel = tokenizerModel
        self.isEmbeddingModel = isEmbeddingModel
        self.fileSize = fileSize
        self.ggufVersion = ggufVersion
    }
}

/// One model as the rest of the system sees it: config merged with defaults, paths resolved, runtime
/// looked up, and the file's state and metadata.
public struct ResolvedModel: Codable, Sendable, Equatable {
    public var id: String
    public var aliases: [String]
    public var displayName: String?
    /// Absolute path of the model file (the first shard of a split model).
    public var path: String
    public var runtime: String
    public var runtimeKind: RuntimeKind
    public var runtimePath: String
    /// `default_parameters` overlaid with the model's own `parameters` (the model's values win).
    public var parameters: JSONValue
    public var kind: ModelKind
    public var ttlSeconds: Int?
    /// Never evicted for another model (it still counts against the limits).
    public var pinned: Bool
    /// Loaded when runner-manager starts, and again after a crash.
    public var preload: Bool
    public var unlisted: Bool
    public var mmproj: String?
    public var autoDiscovered: Bool
    public var autoUpdateModel: Bool
    public var state: ModelFileState
    public var error: String?
    public var metadata: ModelMetadata?
    /// Where it comes from (a folder unless the entry says otherwise).
    public var source: ModelSource = .folder
    /// A system prompt used when a chat has none (Ollama's `system`: from its cache, or `create`).
    public var systemPrompt: String?
    /// Ollama's Go template, shown by `/api/show` (llama-server formats chats with the GGUF's own template).
    public var template: String?
    /// The devices the entry names (`devices`: GPU UUIDs or PCI addresses, or "cpu"); empty = placed by free memory.
    public var devices: [String] = []
    /// The smallest context an out-of-memory load may shrink to (`min_ctx_size`); nil = never shrink.
    public var minContextSize: Int?
    /// Runs on the CPU when it fits on no GPU (`allow_cpu_fallback`).
    public var allowCPUFallback = false
    /// Set on the gateway's entries for a peer's models (`<peer>/<model>`): served by that server,
    /// never loaded here. The registry and runner-manager never hold such an entry.
    public var peer: PeerModelRef?

    public init(id: String, aliases: [String], displayName: String?, path: String, runtime: String, runtimeKind: RuntimeKind, runtimePath: String,
                parameters: JSONValue, kind: ModelKind, ttlSeconds: Int?, pinned: Bool = false, preload: Bool = false, unlisted: Bool,
                mmproj: String?, autoDiscovered: Bool, autoUpdateModel: Bool, state: ModelFileState, error: String?, metadata: ModelMetadata?) {
        self.id = id
        self.aliases = aliases
        self.displayName = displayName
        self.path = path
        self.runtime = runtime
        self.runtimeKind = runtimeKind
        self.runtimePath = runtimePath
        self.parameters = parameters
        self.kind = kind
        self.ttlSeconds = ttlSeconds
        self.pinned = pinned
        self.preload = preload
        self.unlisted = unlisted
        self.mmproj = mmproj
        self.autoDiscovered = autoDiscovered
        self.autoUpdateModel = autoUpdateModel
        self.state = state
        self.error = error
        self.metadata = metadata
    }

    enum CodingKeys: String, CodingKey {
        case id, aliases, displayName, path, runtime, runtimeKind, runtimePath, parameters, kind, ttlSeconds, pinned, preload, unlisted
        case mmproj, autoDiscovered, autoUpdateModel, state, error, metadata, source, systemPrompt, template
        case devices, minContextSize, allowCPUFallback, peer
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try c.decode(String.self, forKey: .id)
        aliases = try c.decode([String].self, forKey: .aliases)
        displayName = try c.decodeIfPresent(String.self, forKey: .displayName)
        path = try c.decode(String.self, forKey: .path)
        runtime = try c.decode(String.self, forKey: .runtime)
        runtimeKind = try c.decode(RuntimeKind.self, forKey: .runtimeKind)
        runtimePath = try c.decode(String.self, forKey: .runtimePath)
        parameters = try c.decode(JSONValue.self, forKey: .parameters)
        kind = try c.decode(ModelKind.self, forKey: .kind)
        ttlSeconds = try c.decodeIfPresent(Int.self, forKey: .ttlSeconds)
        pinned = try c.decodeIfPresent(Bool.self, forKey: .pinned) ?? false
        preload = try c.decodeIfPresent(Bool.self, forKey: .preload) ?? false
        unlisted = try c.decode(Bool.self, forKey: .unlisted)
        mmproj = try c.decodeIfPresent(String.self, forKey: .mmproj)
        autoDiscovered = try c.decode(Bool.self, forKey: .autoDiscovered)
        autoUpdateModel = try c.decode(Bool.self, forKey: .autoUpdateModel)
        state = try c.decode(ModelFileState.self, forKey: .state)
        error = try c.decodeIfPresent(String.self, forKey: .error)
        metadata = try c.decodeIfPresent(ModelMetadata.self, forKey: .metadata)
        source = try c.decodeIfPresent(ModelSource.self, forKey: .source) ?? .folder
        systemPrompt = try c.decodeIfPresent(String.self, forKey: .systemPrompt)
        template = try c.decodeIfPresent(String.self, forKey: .template)
        devices = try c.decodeIfPresent([String].self, forKey: .devices) ?? []
        minContextSize = try c.decodeIfPresent(Int.self, forKey: .minContextSize)
        allowCPUFallback = try c.decodeIfPresent(Bool.self, forKey: .allowCPUFallback) ?? false
        peer = try c.decodeIfPresent(PeerModelRef.self, forKey: .peer)
    }
}

/// A model another server serves: the peer's name in `app_config.json` and the model's id there.
public struct PeerModelRef: Codable, Sendable, Equatable, Hashable {
    public var peer: String
    public var model: String
    public init(peer: String, model: String) {
        self.peer = peer
        self.model = model
    }
}

/// The whole resolved model table, with the revision it belongs to.
public struct RegistrySnapshot: Codable, Sendable, Equatable {
    public var revision: String
    public var defaultModel: String?
    public var models: [ResolvedModel]
    public init(revision: String, defaultModel: String?, models: [ResolvedModel]) {
        self.revision = revision
        self.defaultModel = defaultModel
        self.models = models
    }

    /// The one way a requested name becomes a model, in every service (the gateway resolves, runner-
    /// manager resolves again, the registry answers `modelInfo`), so a name can never resolve in one
    /// and be unknown in another. In order: the id, an alias, the display name, the id in any case,
    /// each also with Ollama's `:latest` tag dropped; no name (or only spaces) is `default_model`.
    public func resolve(_ requested: String?) -> ResolvedModel? {
        guard let name = requested?.trimmingSpaces(), !name.isEmpty else {
            return defaultModel.flatMap { d in models.first { $0.id == d } }
        }
        let candidates = [String(name), name.hasSuffix(":latest") ? String(name.dropLast(7)) : nil].compactMap { $0 }
        for n in candidates {
            if let m = models.first(where: { $0.id == n }) ?? models.first(where: { $0.aliases.contains(n) })
                ?? models.first(where: { $0.displayName == n }) ?? models.first(where: { $0.id.lowercased() == n.lowercased() }) {
                return m
            }
        }
        return nil
    }
}

/// One config file's state in `registry.status`.
public struct ConfigFileStatus: Codable, Sendable, Equatable {
    public var name: String
    public var path: String
    public var state: ConfigFileState
    public var errors: [String]
    public var warnings: [String]
    public init(name: String, path: String, state: ConfigFileState, errors: [String], warnings: [String]) {
        self.name = name
        self.path = path
        self.state = state
        self.errors = errors
        self.warnings = warnings
    }
}

/// What the last discovery did.
public struct DiscoveryReport: Codable, Sendable, Equatable {
    public var revision: String
    public var added: [String]
    public var updated: [String]
    public var missing: [String]
    /// Files that could not be read, with the reason.
    public var unreadable: [String]
    public var scannedFiles: Int
    public init(revision: String, added: [String], updated: [String], missing: [String], unreadable: [String], scannedFiles: Int) {
        self.revision = revision
        self.added = added
        self.updated = updated
        self.missing = missing
        self.unreadable = unreadable
        self.scannedFiles = scannedFiles
    }
}

/// `registry.status`.
public struct RegistryStatus: Codable, Sendable, Equatable {
    public var revision: String
    public var files: [ConfigFileStatus]
    public var lastDiscovery: DiscoveryReport?
    public var modelCount: Int
    public init(revision: String, files: [ConfigFileStatus], lastDiscovery: DiscoveryReport?, modelCount: Int) {
        self.revision = revision
        self.files = files
        self.lastDiscovery = lastDiscovery
        self.modelCount = modelCount
    }
}

/// A config backup in `config/backups/`.
public struct BackupInfo: Codable, Sendable, Equatable {
    /// File name inside `backups/`, e.g. `models_config-20261125T021432.123Z.json`.
    public var name: String
    /// The config file it backs up (`app_config.json` or `models_config.json`).
    public var file: String
    public var createdAt: String
    public var bytes: Int
    public init(name: String, file: String, createdAt: String, bytes: Int) {
        self.name = name
        self.file = file
        self.createdAt = createdAt
        self.bytes = bytes
    }
}
