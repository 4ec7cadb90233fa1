/// Methods of `registry.sock`.
public enum RegistryRPC {
    /// The app configuration in force.
    public enum AppConfigGet: RPCMethod {
        public typealias Params = Empty
        public typealias Result = AppConfig
        public static let name = "registry.appConfig"
    }
}

/// Params of registry edits: the revision the caller last saw (a stale one is a conflict, code
/// -32009, whose data names the current revision).
public struct ModelEdit: Codable, Sendable {
    public var revision: String
    public var id: String
    /// The whole entry as it should be (`registry.updateModel`); ignored by `registry.removeModel`.
    public var entry: JSONValue?
    public init(revision: String, id: String, entry: JSONValue? = nil) {
        self.revision = revision
        self.id = id
        self.entry = entry
    }
}

/// A whole-document or single-value edit with the revision the caller last saw.
public struct DocumentEdit: Codable, Sendable {
    public var revision: String
    public var value: JSONValue
    public init(revision: String, value: JSONValue) {
        self.revision = revision
        self.value = value
    }
}

/// `registry.restore` params.
public struct RestoreRequest: Codable, Sendable {
    public var name: String
    /// When given, a stale revision is a conflict.
    public var revision: String?
    public init(name: String, revision: String? = nil) {
        self.name = name
        self.revision = revision
    }
}

/// A model named by id or alias.
public struct ModelRef: Codable, Sendable {
    public var model: String
    public init(model: String) { self.model = model }
}

/// The revision after an edit.
public struct Revision: Codable, Sendable, Equatable {
    public var revision: String
    public init(revision: String) { self.revision = revision }
}

extension RegistryRPC {
    /// The resolved model table (ids, aliases, paths, runtimes, merged parameters, metadata, state).
    public enum Snapshot: RPCMethod {
        public typealias Params = Empty
        public typealias Result = RegistrySnapshot
        public static let name = "registry.snapshot"
    }

    /// Revision, each file's state (including a rejected hand edit) and the last discovery.
    public enum Status: RPCMethod {
        public typealias Params = Empty
        public typealias Result = RegistryStatus
        public static let name = "registry.status"
    }

    /// Scans the models folders now.
    public enum Discover: RPCMethod {
        public typealias Params = Empty
        public typealias Result = DiscoveryReport
        public static let name = "registry.discover"
    }

    /// Creates or replaces one model entry.
    public enum UpdateModel: RPCMethod {
        public typealias Params = ModelEdit
        public typealias Result = Revision
        public static let name = "registry.updateModel"
    }

    /// Removes one model entry (the file stays).
    public enum RemoveModel: RPCMethod {
        public typealias Params = ModelEdit
        public typealias Result = Revision
        public static let name = "registry.removeModel"
    }

    /// Sets `default_model` (a string or null).
    public enum SetDefaultModel: RPCMethod {
        public typealias Params = DocumentEdit
        public typealias Result = Revision
        public static let name = "registry.setDefaultModel"
    }

    /// Replaces `default_parameters`.
    public enum UpdateDefaultParameters: RPCMethod {
        public typealias Params = DocumentEdit
        public typealias Result = Revision
        public static let name = "registry.updateDefaultParameters"
    }

    /// Replaces the whole app config document.
    public enum UpdateApp: RPCMethod {
        public typealias Params = DocumentEdit
        public typealias Result = Revision
        public static let name = "registry.updateApp"
    }

    /// The JSON Schema the validator enforces for one file (`app` or `models`), as
    /// `model-registry --print-schema` prints it (the dashboard builds its config forms from it).
    public enum Schema: RPCMethod {
        public struct Params: Codable, Sendable {
            public var file: String
            public init(file: String) { self.file = file }
        }
        public typealias Result = JSONValue
        public static let name = "registry.schema"
    }

    /// Both documents as they are on disk (for editors).
    public enum Documents: RPCMethod {
        public struct Result: Codable, Sendable {
            public var revision: String
            public var app: JSONValue
            public var models: JSONValue
            public init(revision: String, app: JSONValue, models: JSONValue) {
                self.revision = revision
                self.app = app
                self.models = models
            }
        }
        public typealias Params = Empty
        public static let name = "registry.documents"
    }

    /// Backups, newest first.
    public enum Backups: RPCMethod {
        public typealias Params = Empty
        public typealias Result = [BackupInfo]
        public static let name = "registry.backups"
    }

    /// One backup's content (the dashboard compares it with the current file before a restore).
    public enum Backup: RPCMethod {
        public struct Params: Codable, Sendable {
            public var name: String
            public init(name: String) { self.name = name }
        }
        public struct Result: Codable, Sendable {
            public var name: String
            public var file: String
            public var document: JSONValue
            public init(name: String, file: String, document: JSONValue) {
                self.name = name
                self.file = file
                self.document = document
            }
        }
        public static let name = "registry.backup"
    }

    /// Restores a backup (the current file is backed up first).
    public enum Restore: RPCMethod {
        public typealias Params = RestoreRequest
        public typealias Result = Revision
        public static let name = "registry.restore"
    }

    /// Every GGUF key/value of a model's file (large arrays summarized).
    public enum ModelInfo: RPCMethod {
        public typealias Params = ModelRef
        public typealias Result = JSONValue
        public static let name = "registry.modelInfo"
    }

    /// Pushed to subscribers whenever the revision changes.
    public enum Changed: RPCNotification {
        public typealias Params = Revision
        public static let name = "registry.changed"
    }
}

/// `registry.createModel` params: a new model over an existing one's file (`from`), or over GGUF
/// blobs uploaded to the models folder's blob store (`files`, Ollama's `name → sha256:<hex>`).
public struct CreateModelRequest: Codable, Sendable {
    public var id: String
    public var from: String?
    public var files: [String: String]?
    /// Defaults over the source's, as llama-server options (the gateway translates Ollama's names
    /// with `OllamaOptions`); validated as a model's `parameters` are.
    public var parameters: JSONValue?
    public var system: String?
    public var template: String?
    public init(id: String, from: String? = nil, files: [String: String]? = nil, parameters: JSONValue? = nil, system: String? = nil,
                template: String? = nil) {
        self.id = id
        self.from = from
        self.files = files
        self.parameters = parameters
        self.system = system
        self.template = template
    }
}

/// `registry.copyModel` params.
public struct CopyModelRequest: Codable, Sendable {
    public var source: String
    public var destination: String
    public init(source: String, destination: String) {
        self.source = source
        self.destination = destination
    }
}

/// What `registry.deleteModel` did.
public struct DeleteModelResult: Codable, Sendable, Equatable {
    public var revision: String
    /// Files Llama Runner had downloaded or stored for the model, now deleted.
    public var deletedFiles: [String]
    public init(revision: String, deletedFiles: [String]) {
        self.revision = revision
        self.deletedFiles = deletedFiles
    }
}

extension RegistryRPC {
    /// Creates (or replaces) a model from another one or from uploaded blobs (Ollama's `create`).
    public enum CreateModel: RPCMethod {
        public typealias Params = CreateModelRequest
        public typealias Result = Revision
        public static let name = "registry.createModel"
    }

    /// Copies a model's entry under another name (Ollama's `copy`).
    public enum CopyModel: RPCMethod {
        public typealias Params = CopyModelRequest
        public typealias Result = Revision
        public static let name = "registry.copyModel"
    }

    /// Removes a model (Ollama's `delete`), and the files Llama Runner downloaded or stored for it
    /// that no other model uses; never a file of the user's own or in another tool's cache
    /// (-32013 says whose it is).
    public enum DeleteModel: RPCMethod {
        public typealias Params = ModelRef
        public typealias Result = DeleteModelResult
        public static let name = "registry.deleteModel"
    }
}
