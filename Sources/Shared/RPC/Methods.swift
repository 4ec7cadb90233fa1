
/// What every service answers to `health`.
public struct HealthInfo: Codable, Sendable, Equatable {
    public var service: String
    public var pid: Int32
    public var version: String
    public var uptimeSeconds: Double
    public var status: HealthStatus
    public var detail: String?

    public init(service: String, pid: Int32, version: String, uptimeSeconds: Double, status: HealthStatus, detail: String? = nil) {
        self.service = service
        self.pid = pid
        self.version = version
        self.uptimeSeconds = uptimeSeconds
        self.status = status
        self.detail = detail
    }
}

/// Methods every service implements.
public enum ServiceRPC {
    /// Name, pid, version, uptime and status.
    public enum Health: RPCMethod {
        public typealias Params = Empty
        public typealias Result = HealthInfo
        public static let name = "health"
    }

    /// Graceful stop; the reply is sent before the service begins stopping.
    public enum Shutdown: RPCMethod {
        public typealias Params = Empty
        public typealias Result = Empty
        public static let name = "shutdown"
    }
}

/// One supervised service as the launcher sees it.
public struct ServiceStatus: Codable, Sendable, Equatable {
    public var name: String
    public var pid: Int32?
    public var state: ServiceState
    /// Restarts since `launcher up`.
    public var restarts: Int
    public var uptimeSeconds: Double?
    /// Why the service is failed or was last restarted.
    public var message: String?

    public init(name: String, pid: Int32?, state: ServiceState, restarts: Int, uptimeSeconds: Double?, message: String? = nil) {
        self.name = name
        self.pid = pid
        self.state = state
        self.restarts = restarts
        self.uptimeSeconds = uptimeSeconds
        self.message = message
    }
}

/// A service named in a launcher call.
public struct ServiceRef: Codable, Sendable {
    public var service: String
    public init(service: String) { self.service = service }
}

/// Methods of `launcher.sock`.
public enum LauncherRPC {
    public struct StatusReport: Codable, Sendable {
        public var launcherPid: Int32
        public var uptimeSeconds: Double
        public var services: [ServiceStatus]
        public init(launcherPid: Int32, uptimeSeconds: Double, services: [ServiceStatus]) {
            self.launcherPid = launcherPid
            self.uptimeSeconds = uptimeSeconds
            self.services = services
        }
    }

    /// Every service's pid, state, restarts and uptime.
    public enum Status: RPCMethod {
        public typealias Params = Empty
        public typealias Result = StatusReport
        public static let name = "launcher.status"
    }

    /// Restarts one service (the others keep serving); answers once it is healthy again.
    public enum Restart: RPCMethod {
        public typealias Params = ServiceRef
        public typealias Result = ServiceStatus
        public static let name = "launcher.restart"
    }

    /// Stops every service and the launcher.
    public enum Down: RPCMethod {
        public typealias Params = Empty
        public typealias Result = Empty
        public static let name = "launcher.down"
    }
}

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

/// `runners.acquire` params.
public struct AcquireRequest: Codable, Sendable {
    /// Id, alias or display name.
    public var model: String
    /// Ollama's keep_alive in seconds: 0 = unload when idle, negative = never; nil = the model's TTL.
    public var keepAlive: Double?
    /// Load-time parameters for this request (e.g. Ollama's `num_ctx` as `ctx_size`), over the model's
    /// own. Different ones need a different runner, which replaces the running one only when idle.
    public var parameters: JSONValue?
    public init(model: String, keepAlive: Double? = nil, parameters: JSONValue? = nil) {
        self.model = model
        self.keepAlive = keepAlive
        self.parameters = parameters
    }
}

/// A granted runner.
public struct AcquireResult: Codable, Sendable, Equatable {
    /// The resolved model id.
    public var model: String
    /// e.g. `http://127.0.0.1:41234`.
    public var endpoint: String
    public var lease: UInt64
    /// Time spent waiting for a load this request caused or joined; 0 when the runner was ready.
    public var loadDurationMs: Int
    public init(model: String, endpoint: String, lease: UInt64, loadDurationMs: Int) {
        self.model = model
        self.endpoint = endpoint
        self.lease = lease
        self.loadDurationMs = loadDurationMs
    }
}

/// Token counts reported when a lease ends.
public struct Usage: Codable, Sendable, Equatable {
    /// Every prompt token, those reused from the runner's prompt cache included.
    public var promptTokens: Int
    public var completionTokens: Int
    /// The part of `promptTokens` reused from the prompt cache (not evaluated again).
    public var cachedTokens: Int
    public init(promptTokens: Int = 0, completionTokens: Int = 0, cachedTokens: Int = 0) {
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
        self.cachedTokens = cachedTokens
    }
    enum CodingKeys: String, CodingKey { case promptTokens, completionTokens, cachedTokens }
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        promptTokens = try c.decodeIfPresent(Int.self, forKey: .promptTokens) ?? 0
        completionTokens = try c.decodeIfPresent(Int.self, forKey: .completionTokens) ?? 0
        cachedTokens = try c.decodeIfPresent(Int.self, forKey: .cachedTokens) ?? 0
    }
}

/// `runners.release` params.
public struct ReleaseRequest: Codable, Sendable {
    public var lease: UInt64
    public var usage: Usage?
    public init(lease: UInt64, usage: Usage? = nil) {
        self.lease = lease
        self.usage = usage
    }
}

/// One runner in `runners.list`.
public struct RunnerInfo: Codable, Sendable, Equatable {
    public var model: String
    public var state: RunnerPhase
    public var pid: Int32?
    public var endpoint: String?
    public var memoryEstimateBytes: Int
    public var rssBytes: Int?
    public var activeLeases: Int
    public var queued: Int
    /// Seconds since the last lease ended (nil while busy or never used).
    public var idleSeconds: Double?
    /// Seconds until an idle unload (nil: busy, never, not ready).
    public var expiresInSeconds: Double?
    public var loadDurationMs: Int?
    /// While loading: the last log line; when failed: the reason.
    public var detail: String?
    public var adopted: Bool
    /// The context size the runner was started with (`ctx_size` after a request's overrides such as
    /// Ollama's `num_ctx`); nil when it runs with the model's own.
    public var contextLength: Int?
    public init(model: String, state: RunnerPhase, pid: Int32?, endpoint: String?, memoryEstimateBytes: Int, rssBytes: Int?, activeLeases: Int,
                queued: Int, idleSeconds: Double?, expiresInSeconds: Double?, loadDurationMs: Int?, detail: String?, adopted: Bool,
                contextLength: Int? = nil) {
        self.contextLength = contextLength
        self.model = model
        self.state = state
        self.pid = pid
        self.endpoint = endpoint
        self.memoryEstimateBytes = memoryEstimateBytes
        self.rssBytes = rssBytes
        self.activeLeases = activeLeases
        self.queued = queued
        self.idleSeconds = idleSeconds
        self.expiresInSeconds = expiresInSeconds
        self.loadDurationMs = loadDurationMs
        self.detail = detail
        self.adopted = adopted
    }
}

/// `runners.logs` params.
public struct LogsRequest: Codable, Sendable {
    public var model: String
    public var tail: Int?
    public init(model: String, tail: Int? = nil) {
        self.model = model
        self.tail = tail
    }
}

/// A runner state transition (`runners.state`).
public struct RunnerState: Codable, Sendable, Equatable {
    public var model: String
    public var state: RunnerPhase
    public var pid: Int32?
    public var detail: String?
    public init(model: String, state: RunnerPhase, pid: Int32? = nil, detail: String? = nil) {
        self.model = model
        self.state = state
        self.pid = pid
        self.detail = detail
    }
}

/// Methods of `runners.sock`.
public enum RunnersRPC {
    /// Waits until the model's runner is ready and grants a lease on it.
    public enum Acquire: RPCMethod {
        public typealias Params = AcquireRequest
        public typealias Result = AcquireResult
        public static let name = "runners.acquire"
    }

    public enum Release: RPCMethod {
        public typealias Params = ReleaseRequest
        public typealias Result = Empty
        public static let name = "runners.release"
    }

    public enum List: RPCMethod {
        public typealias Params = Empty
        public typealias Result = [RunnerInfo]
        public static let name = "runners.list"
    }

    /// Loads a model (and returns once ready) without keeping a lease.
    public enum Load: RPCMethod {
        public typealias Params = AcquireRequest
        public typealias Result = RunnerInfo
        public static let name = "runners.load"
    }

    /// Unloads a model now if idle, otherwise when its leases end.
    public enum Unload: RPCMethod {
        public typealias Params = ModelRef
        public typealias Result = Empty
        public static let name = "runners.unload"
    }

    public enum UnloadAll: RPCMethod {
        public typealias Params = Empty
        public typealias Result = Empty
        public static let name = "runners.unloadAll"
    }

    /// The last lines of a runner's log (default 100, at most 500).
    public enum Logs: RPCMethod {
        public typealias Params = LogsRequest
        public typealias Result = [String]
        public static let name = "runners.logs"
    }

    /// Called by the launcher before restarting runner-manager: keep the runners alive on exit so the
    /// next runner-manager adopts them.
    public enum Detach: RPCMethod {
        public typealias Params = Empty
        public typealias Result = Empty
        public static let name = "runners.detach"
    }

    public enum StateChanged: RPCNotification {
        public typealias Params = RunnerState
        public static let name = "runners.state"
    }
}

/// One finished request, sent by the gateway as a `metrics.record` notification (fire and forget:
/// metrics being down never fails or slows a request).
public struct RequestRecord: Codable, Sendable, Equatable {
    public var model: String
    /// `openai`, `ollama`, `lmstudio`, `anthropic`, `llama`.
    public var api: String
    /// The route template, never the raw path (e.g. `/v1/chat/completions`).
    public var route: String
    public var status: Int
    public var timeToFirstByteMs: Double
    public var durationMs: Double
    public var promptTokens: Int
    public var completionTokens: Int
    /// Prompt tokens reused from the runner's prompt cache (part of `promptTokens`).
    public var cachedTokens: Int?
    public var loadMs: Int
    public var overheadMs: Double
    public var clientDisconnected: Bool
    /// Seconds of audio in a transcription request (WAV uploads), nil for everything else.
    public var audioSeconds: Double?
    /// Why the request failed after its head was sent (the status then says 502), or why the runner
    /// refused it; nil when it succeeded.
    public var error: String?
    public init(model: String, api: String, route: String, status: Int, timeToFirstByteMs: Double, durationMs: Double,
                promptTokens: Int, completionTokens: Int, cachedTokens: Int? = nil, loadMs: Int, overheadMs: Double,
                clientDisconnected: Bool, audioSeconds: Double? = nil, error: String? = nil) {
        self.cachedTokens = cachedTokens
        self.error = error
        self.model = model
        self.api = api
        self.route = route
        self.status = status
        self.timeToFirstByteMs = timeToFirstByteMs
        self.durationMs = durationMs
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
        self.loadMs = loadMs
        self.overheadMs = overheadMs
        self.clientDisconnected = clientDisconnected
        self.audioSeconds = audioSeconds
    }
}

public enum MetricsRPC {
    public enum Record: RPCNotification {
        public typealias Params = RequestRecord
        public static let name = "metrics.record"
    }
}

/// `metrics.summary`: per model and overall.
public struct MetricsSummary: Codable, Sendable, Equatable {
    public struct Figures: Codable, Sendable, Equatable {
        public var requests: Int
        public var errors: Int
        public var requestsPerSecond: Double
        public var errorRate: Double
        public var timeToFirstTokenP50Ms: Double?
        public var timeToFirstTokenP95Ms: Double?
        public var tokensPerSecond: Double?
        public var loadTimeP50Ms: Double?
        public init(requests: Int, errors: Int, requestsPerSecond: Double, errorRate: Double, timeToFirstTokenP50Ms: Double?,
                    timeToFirstTokenP95Ms: Double?, tokensPerSecond: Double?, loadTimeP50Ms: Double?) {
            self.requests = requests
            self.errors = errors
            self.requestsPerSecond = requestsPerSecond
            self.errorRate = errorRate
            self.timeToFirstTokenP50Ms = timeToFirstTokenP50Ms
            self.timeToFirstTokenP95Ms = timeToFirstTokenP95Ms
            self.tokensPerSecond = tokensPerSecond
            self.loadTimeP50Ms = loadTimeP50Ms
        }
    }
    /// Over the last `windowSeconds`.
    public var windowSeconds: Double
    public var overall: Figures
    public var models: [String: Figures]
    public init(windowSeconds: Double, overall: Figures, models: [String: Figures]) {
        self.windowSeconds = windowSeconds
        self.overall = overall
        self.models = models
    }
}

/// A recorded request with its time.
public struct TimedRecord: Codable, Sendable, Equatable {
    /// Unix time, seconds.
    public var at: Double
    public var record: RequestRecord
    public init(at: Double, record: RequestRecord) {
        self.at = at
        self.record = record
    }
}

public struct RecordsRequest: Codable, Sendable {
    public var limit: Int?
    public init(limit: Int? = nil) { self.limit = limit }
}

extension MetricsRPC {
    public enum Summary: RPCMethod {
        public typealias Params = Empty
        public typealias Result = MetricsSummary
        public static let name = "metrics.summary"
    }

    /// The last requests, newest first (at most 1,000 are kept).
    public enum Requests: RPCMethod {
        public typealias Params = RecordsRequest
        public typealias Result = [TimedRecord]
        public static let name = "metrics.requests"
    }

    /// Everything in the Prometheus text exposition format (served at :8585/metrics).
    public enum Prometheus: RPCMethod {
        public typealias Params = Empty
        public typealias Result = String
        public static let name = "metrics.prometheus"
    }
}

/// `metrics.series` params: a series name and a window (`1h` at 2 s resolution, `24h` at 1 min).
public struct SeriesRequest: Codable, Sendable {
    public var name: String
    public var window: String
    public init(name: String, window: String = "1h") {
        self.name = name
        self.window = window
    }
}

/// Points of one series: unix seconds and values (nil where nothing was measured).
public struct Series: Codable, Sendable, Equatable {
    public var name: String
    public var window: String
    public var stepSeconds: Double
    public var points: [[Double?]]
    public init(name: String, window: String, stepSeconds: Double, points: [[Double?]]) {
        self.name = name
        self.window = window
        self.stepSeconds = stepSeconds
        self.points = points
    }
}

extension MetricsRPC {
    /// One of `requests_per_second`, `error_rate`, `ttft_p50_ms`, `tokens_per_second`, `runner_memory_bytes`.
    public enum SeriesQuery: RPCMethod {
        public typealias Params = SeriesRequest
        public typealias Result = Series
        public static let name = "metrics.series"
    }
}
