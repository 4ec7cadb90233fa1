/// What a model pull is doing.
public enum PullPhase: String, Codable, Sendable, CaseIterable {
    /// Asking the hub for the repository's files and picking the ones to download.
    case resolving
    case downloading
    /// Every byte is in; the SHA-256 is being compared and the file renamed into place.
    case verifying
    /// The model is being added to `models_config.json`.
    case registering
    case done
    case failed
    case cancelled

    public var isFinished: Bool { self == .done || self == .failed || self == .cancelled }
}

/// Why a pull failed, in terms each surface maps to its own status codes.
public enum PullFailure: String, Codable, Sendable {
    /// The name cannot be a Hugging Face repository or file.
    case invalidName
    /// No such repository, revision or file (or a private one without a token).
    case notFound
    /// A gated or private repository without a token, or with one the hub refused.
    case unauthorized
    /// A gated repository the token's account has not been granted.
    case forbidden
    /// The hub's rate limit.
    case rateLimited
    /// Not enough free disk space for the files.
    case insufficientSpace
    /// The downloaded bytes do not have the SHA-256 the hub reports (the file was deleted).
    case checksumMismatch
    /// The hub could not be reached, or answered what a hub does not answer.
    case unreachable
    /// Something else (the message says what).
    case other
}

/// One file of a pull.
public struct PullFile: Codable, Sendable, Equatable {
    /// Its path in the repository.
    public var name: String
    /// `sha256:<hex>` (the LFS oid), once known.
    public var digest: String
    public var total: Int
    public var completed: Int
    public init(name: String, digest: String, total: Int, completed: Int) {
        self.name = name
        self.digest = digest
        self.total = total
        self.completed = completed
    }
}

/// A pull as every surface reports it (`registry.pull`, `registry.pullStatus`, the
/// `registry.pullProgress` notification).
public struct PullStatus: Codable, Sendable, Equatable {
    public var job: String
    /// The name as it was asked for.
    public var name: String
    /// The model id it is (or will be) registered as.
    public var model: String?
    /// `user/repo`.
    public var repo: String?
    public var phase: PullPhase
    public var files: [PullFile]
    public var failure: PullFailure?
    public var error: String?
    /// Unix times in milliseconds.
    public var startedAt: Int
    public var completedAt: Int?
    public var bytesPerSecond: Double?
    /// Every file was already in place: nothing was downloaded.
    public var alreadyDownloaded: Bool

    public init(job: String, name: String, model: String? = nil, repo: String? = nil, phase: PullPhase, files: [PullFile] = [],
                failure: PullFailure? = nil, error: String? = nil, startedAt: Int, completedAt: Int? = nil, bytesPerSecond: Double? = nil,
                alreadyDownloaded: Bool = false) {
        self.job = job
        self.name = name
        self.model = model
        self.repo = repo
        self.phase = phase
        self.files = files
        self.failure = failure
        self.error = error
        self.startedAt = startedAt
        self.completedAt = completedAt
        self.bytesPerSecond = bytesPerSecond
        self.alreadyDownloaded = alreadyDownloaded
    }

    public var totalBytes: Int { files.reduce(0) { $0 + $1.total } }
    public var completedBytes: Int { files.reduce(0) { $0 + $1.completed } }
}

/// `registry.pull` params.
public struct PullRequest: Codable, Sendable {
    /// `hf.co/user/repo[:quant]`, `huggingface.co/…`, `user/repo[:quant]`, `user/repo/file.gguf`, or a
    /// `https://huggingface.co/user/repo…` URL.
    public var name: String
    /// A quantization tag (LM Studio's `quantization`), when the name has none.
    public var quantization: String?
    public init(name: String, quantization: String? = nil) {
        self.name = name
        self.quantization = quantization
    }
}

/// A pull job by id.
public struct PullRef: Codable, Sendable {
    public var job: String
    public init(job: String) { self.job = job }
}

extension RegistryRPC {
    /// Starts a pull, or joins the one under way for the same files; returns at once.
    public enum Pull: RPCMethod {
        public typealias Params = PullRequest
        public typealias Result = PullStatus
        public static let name = "registry.pull"
    }

    /// One pull's state (pulls are kept an hour after they end).
    public enum PullStatusGet: RPCMethod {
        public typealias Params = PullRef
        public typealias Result = PullStatus
        public static let name = "registry.pullStatus"
    }

    /// Every pull under way or recently ended, newest first.
    public enum Pulls: RPCMethod {
        public typealias Params = Empty
        public typealias Result = [PullStatus]
        public static let name = "registry.pulls"
    }

    /// Cancels a pull: what was downloaded stays as a resumable `.partial` file.
    public enum CancelPull: RPCMethod {
        public typealias Params = PullRef
        public typealias Result = PullStatus
        public static let name = "registry.cancelPull"
    }

    /// A pull's state changed (pushed to subscribers at most every 100 ms per pull, and at each phase).
    public enum PullProgress: RPCNotification {
        public typealias Params = PullStatus
        public static let name = "registry.pullProgress"
    }
}
