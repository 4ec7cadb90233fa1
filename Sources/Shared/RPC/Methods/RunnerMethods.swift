/// `runners.acquire` params.
public struct AcquireRequest: Codable, Sendable {
    /// Id, alias or display name.
    public var model: String
    /// Ollama's keep_alive in seconds: 0 = unload when idle, negative = never; nil = the model's TTL.
    public var keepAlive: Double?
    /// Load-time parameters for this request (e.g. Ollama's `num_ctx` as `ctx_size`), over the model's
    /// own. Different ones need a different runner, which replaces the running one only when idle.
    public var parameters: JSONValue?
    /// The registry revision the caller resolved the name against: a name runner-manager does not
    /// know yet, under an older revision of its own, makes it read the model table first (a model a
    /// pull or an edit has just added is usable at once).
    public var revision: String?
    public init(model: String, keepAlive: Double? = nil, parameters: JSONValue? = nil, revision: String? = nil) {
        self.model = model
        self.keepAlive = keepAlive
        self.parameters = parameters
        self.revision = revision
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
    /// The runner's own API key (`Authorization: Bearer`), on a host that serves remote gateways.
    public var apiKey: String?
    public init(model: String, endpoint: String, lease: UInt64, loadDurationMs: Int, apiKey: String? = nil) {
        self.model = model
        self.endpoint = endpoint
        self.lease = lease
        self.loadDurationMs = loadDurationMs
        self.apiKey = apiKey
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
    /// Saves and restores of this model's slots (conversations kept across unloads) so far.
    public var slotCache: SlotCacheCounts?
    /// What the runner reported allocating once loaded (llama-server's buffer sizes); nil before, or
    /// for whisper-server.
    public var measuredMemory: MeasuredMemory?
    /// The GPUs it was placed on (ids as in `runners.hardware`), empty for the CPU alone; nil when not running.
    public var devices: [String]?
    /// Bytes it holds on each device (`cpu`, GPU ids) as the scheduler counts them: the estimate
    /// while it loads, the measured figures once it is ready.
    public var memoryByDevice: [String: Int]?
    /// The host it runs on, set by a gateway that uses several (`hosts`); nil on one machine.
    public var host: String?
    public init(model: String, state: RunnerPhase, pid: Int32?, endpoint: String?, memoryEstimateBytes: Int, rssBytes: Int?, activeLeases: Int,
                queued: Int, idleSeconds: Double?, expiresInSeconds: Double?, loadDurationMs: Int?, detail: String?, adopted: Bool,
                contextLength: Int? = nil, slotCache: SlotCacheCounts? = nil, measuredMemory: MeasuredMemory? = nil) {
        self.contextLength = contextLength
        self.slotCache = slotCache
        self.measuredMemory = measuredMemory
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
    /// On `ready`: the context size the runner was started with (as `runners.list` reports it), so a
    /// client can send later requests with the same settings without asking.
    public var contextLength: Int?
    /// On `loading`: the out-of-memory ladder's step being tried ("out of memory on …: trying …"), which
    /// the gateway shows in the waiting clients' load progress; the runner's own log lines are `detail`.
    public var step: String?
    public init(model: String, state: RunnerPhase, pid: Int32? = nil, detail: String? = nil, contextLength: Int? = nil, step: String? = nil) {
        self.model = model
        self.state = state
        self.pid = pid
        self.detail = detail
        self.contextLength = contextLength
        self.step = step
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

    /// What a gateway places requests by, in one call (its heartbeat to each host): the host's name,
    /// the models its registry has, its devices' free memory and its runners.
    public enum Host: RPCMethod {
        public typealias Params = Empty
        public typealias Result = HostInfo
        public static let name = "runners.host"
    }

    /// The host's model table in full (fetched when `HostInfo.revision` changes).
    public enum Models: RPCMethod {
        public typealias Params = Empty
        public typealias Result = RegistrySnapshot
        public static let name = "runners.models"
    }

    public enum StateChanged: RPCNotification {
        public typealias Params = RunnerState
        public static let name = "runners.state"
    }
}

/// A runner-manager as a gateway sees it (`runners.host`).
public struct HostInfo: Codable, Sendable, Equatable {
    /// Its name (`runner_host.name`, else the machine's host name).
    public var name: String
    /// Its registry's revision (its models changed when this does).
    public var revision: String
    /// The ids of the models whose files it has.
    public var models: [String]
    public var hardware: HardwareInfo
    public var runners: [RunnerInfo]
    /// Whether it serves remote gateways (`runner_host`): its runners are reached at their endpoint
    /// with the key each grant carries.
    public var remote: Bool
    public init(name: String, revision: String, models: [String], hardware: HardwareInfo, runners: [RunnerInfo], remote: Bool) {
        self.name = name
        self.revision = revision
        self.models = models
        self.hardware = hardware
        self.runners = runners
        self.remote = remote
    }

    /// The most free memory of one device models go to: its freest GPU, else system RAM.
    public var freeBytes: Int {
        hardware.gpus.map(\.freeBytes).max() ?? hardware.devices.first { !$0.isGPU }?.freeBytes ?? 0
    }
}

/// What runner-manager's slot cache did for one model since it started.
public struct SlotCacheCounts: Codable, Sendable, Equatable {
    public var saves = 0
    public var saveFailures = 0
    public var restores = 0
    public var restoreFailures = 0
    public var savedTokens = 0
    public var restoredTokens = 0
    public init() {}
}
