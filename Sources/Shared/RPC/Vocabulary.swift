/// The words the services share, as enums: strings on the wire (their raw values, as before) and
/// checked by the compiler everywhere else, so no comparison can misspell a state.

/// Where a runner is in its life (`runners.list`, `runners.state`): starting → loading → ready →
/// stopping → stopped, or failed with the reason.
public enum RunnerPhase: String, Codable, Sendable, CaseIterable {
    case starting, loading, ready, stopping, stopped, failed

    /// On its way out, or out: no new request goes to it.
    public var isEnding: Bool { self == .stopping || self == .stopped || self == .failed }
}

/// What a model serves (`kind` in `models_config.json`).
public enum ModelKind: String, Codable, Sendable, CaseIterable {
    case chat, embedding, audio
}

/// Which model server a runtime is (`runtimes.<name>.kind` in `app_config.json`).
public enum RuntimeKind: String, Codable, Sendable, CaseIterable {
    case llamaServer = "llama-server"
    case whisperServer = "whisper-server"
}

/// Whether a model's file can be used (`state` in the registry snapshot).
public enum ModelFileState: String, Codable, Sendable, CaseIterable {
    /// The file is there and its header reads.
    case available
    /// No file at the path.
    case missing
    /// The file's metadata could not be read.
    case unreadable
}

/// A service's own health (`health`).
public enum HealthStatus: String, Codable, Sendable, CaseIterable {
    case ok
    /// Serving, with a problem named in `detail` (an invalid hand edit being ignored).
    case degraded
    /// A stop was asked for.
    case stopping
}

/// A config file's state in `registry.status`.
public enum ConfigFileState: String, Codable, Sendable, CaseIterable {
    case ok
    /// The file is absent: the built-in defaults are in force.
    case `default`
    /// The file on disk has errors; the last good version is still served.
    case invalid
}

/// A supervised service's state in `launcher status`.
public enum ServiceState: String, Codable, Sendable, CaseIterable {
    case starting, running, restarting, stopping, stopped, failed
}

/// Where a model comes from, as the dashboard shows it: a models folder, a pull from the hub, or
/// another tool's cache indexed in place (never written to).
public enum ModelSource: String, Codable, Sendable, CaseIterable {
    case folder
    case hub
    case ollama
    case lmstudio
    case huggingface
    case llamaCpp = "llama.cpp"
    /// Made by Ollama's `create` (or `copy`) from another model.
    case created
}
