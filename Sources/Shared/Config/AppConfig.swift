
/// `config/app_config.json`: ports, paths, runtimes, limits and timeouts. Every field has a default,
/// so a missing file or key falls back to a working setup. (Issue 4 adds full validation with
/// JSON paths; this type is the shape both share.)
public struct AppConfig: Codable, Sendable, Equatable {
    /// One public API surface (Ollama on 11434, LM Studio on 1234).
    public struct Proxy: Codable, Sendable, Equatable {
        public var enabled: Bool
        public var host: String
        public var port: UInt16
        /// When non-empty, requests need `Authorization: Bearer <key>` or `x-api-key`.
        public var apiKeys: [String]
        /// Origins allowed by CORS, as patterns (`*` matches any run of characters, `"*"` alone every
        /// origin); nil = the local origins real Ollama allows (`OriginPolicy.localOrigins`).
        public var corsOrigins: [String]?
        /// While a streamed request waits for its model to load, show the load in the stream.
        public var streamLoadingProgress = false

        public init(enabled: Bool = true, host: String = "127.0.0.1", port: UInt16, apiKeys: [String] = [], corsOrigins: [String]? = nil) {
            self.enabled = enabled
            self.host = host
            self.port = port
            self.apiKeys = apiKeys
            self.corsOrigins = corsOrigins
        }

        enum CodingKeys: String, CodingKey {
            case enabled, host, port, apiKeys = "api_keys", corsOrigins = "cors_origins", streamLoadingProgress = "stream_loading_progress"
        }
        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            enabled = try c.decodeIfPresent(Bool.self, forKey: .enabled) ?? true
            host = try c.decodeIfPresent(String.self, forKey: .host) ?? "127.0.0.1"
            port = try c.decode(UInt16.self, forKey: .port)
            apiKeys = try c.decodeIfPresent([String].self, forKey: .apiKeys) ?? []
            corsOrigins = try c.decodeIfPresent([String].self, forKey: .corsOrigins)
            streamLoadingProgress = try c.decodeIfPresent(Bool.self, forKey: .streamLoadingProgress) ?? false
        }
    }

    /// The dashboard's API (8585) and web (8080) ports.
    public struct Dashboard: Codable, Sendable, Equatable {
        public var enabled: Bool = true
        public var host: String = "127.0.0.1"
        public var apiPort: UInt16 = 8585
        public var webPort: UInt16 = 8080
        /// Required for writes when set, and always when binding a non-loopback address.
        public var adminToken: String?
        /// The web dashboard's files; nil = the repository's `dashboard/` folder.
        public var webRoot: String?
        /// Origins allowed to call the dashboard API; nil = only the web dashboard's own.
        public var corsOrigins: [String]?
        /// Keep the last model requests' bodies and answers in memory for the Activity page (off by default).
        public var capture = false

        public init() {}
        enum CodingKeys: String, CodingKey {
            case enabled, host, apiPort = "api_port", webPort = "web_port", adminToken = "admin_token", webRoot = "web_root"
            case corsOrigins = "cors_origins", capture
        }
        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            enabled = try c.decodeIfPresent(Bool.self, forKey: .enabled) ?? true
            host = try c.decodeIfPresent(String.self, forKey: .host) ?? "127.0.0.1"
            apiPort = try c.decodeIfPresent(UInt16.self, forKey: .apiPort) ?? 8585
            webPort = try c.decodeIfPresent(UInt16.self, forKey: .webPort) ?? 8080
            adminToken = try c.decodeIfPresent(String.self, forKey: .adminToken)
            webRoot = try c.decodeIfPresent(String.self, forKey: .webRoot)
            corsOrigins = try c.decodeIfPresent([String].self, forKey: .corsOrigins)
            capture = try c.decodeIfPresent(Bool.self, forKey: .capture) ?? false
        }
    }

    /// HTTP limits and timeouts of the public ports.
    public struct HTTPSettings: Codable, Sendable, Equatable {
        public var maxHeaderBytes = 65536
        public var headerTimeoutSeconds: Double = 10
        public var keepAliveTimeoutSeconds: Double = 60
        public var bodyTimeoutSeconds: Double = 60
        /// The largest WebSocket message accepted (LM Studio's SDK protocol); larger ones close the
        /// connection with 1009.
        public var websocketMaxMessageBytes = 16 << 20
        /// Seconds of WebSocket silence before the server pings, and again before it drops the peer (0 = never).
        public var websocketPingIntervalSeconds: Double = 30

        public init() {}
        enum CodingKeys: String, CodingKey {
            case maxHeaderBytes = "max_header_bytes"
            case headerTimeoutSeconds = "header_timeout_seconds", keepAliveTimeoutSeconds = "keep_alive_timeout_seconds"
            case bodyTimeoutSeconds = "body_timeout_seconds"
            case websocketMaxMessageBytes = "websocket_max_message_bytes", websocketPingIntervalSeconds = "websocket_ping_interval_seconds"
        }
        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            let d = HTTPSettings()
            maxHeaderBytes = try c.decodeIfPresent(Int.self, forKey: .maxHeaderBytes) ?? d.maxHeaderBytes
            headerTimeoutSeconds = try c.decodeIfPresent(Double.self, forKey: .headerTimeoutSeconds) ?? d.headerTimeoutSeconds
            keepAliveTimeoutSeconds = try c.decodeIfPresent(Double.self, forKey: .keepAliveTimeoutSeconds) ?? d.keepAliveTimeoutSeconds
            bodyTimeoutSeconds = try c.decodeIfPresent(Double.self, forKey: .bodyTimeoutSeconds) ?? d.bodyTimeoutSeconds
            websocketMaxMessageBytes = try c.decodeIfPresent(Int.self, forKey: .websocketMaxMessageBytes) ?? d.websocketMaxMessageBytes
            websocketPingIntervalSeconds = try c.decodeIfPresent(Double.self, forKey: .websocketPingIntervalSeconds) ?? d.websocketPingIntervalSeconds
        }
    }

    /// A named model server binary.
    public struct Runtime: Codable, Sendable, Equatable {
        public var kind: RuntimeKind
        /// The executable: a path (relative to the config directory) or a name looked up on PATH.
        public var path: String
        public init(kind: RuntimeKind, path: String) {
            self.kind = kind
            self.path = path
        }
    }

    /// How much may be loaded at once, and for how long.
    public struct Limits: Codable, Sendable, Equatable {
        public var maxLoadedModels = 2
        /// Bytes, or a percentage of physical memory such as "80%".
        public var memoryBudget: JSONValue = .string("80%")
        /// Idle time before a model unloads; per model `ttl_seconds` overrides it. -1 = never.
        public var defaultTTLSeconds = 300
        /// Requests waiting for a runner, per model.
        public var queueSize = 64
        /// Largest request body accepted on the public ports (413 beyond it).
        public var requestBodyBytes = 100 << 20
        /// Seconds between SIGTERM and SIGKILL when a runner is stopped.
        public var unloadTimeoutSeconds = 10
        /// `batch`: a loaded model keeps serving its queued requests while others wait for room, for at
        /// most `maxWaitSeconds`; `fifo`: arrival order, a swap whenever the next request needs one.
        public var swapPolicy = SwapPolicyName.batch
        /// Longest a request waits for room because a loaded model keeps serving its own queue.
        public var maxWaitSeconds: Double = 10
        /// Idle seconds (no request anywhere) after which `resident_model` is loaded again.
        public var residentIdleSeconds: Double = 30
        /// Stop a load whose every waiter left when another model waits for its room.
        public var stopAbandonedLoads = true
        /// Disk for runners' saved conversations (`<state>/slots/`), oldest files deleted first; 0 = off.
        public var slotCacheBytes = 2 << 30
        /// Bytes a download must leave free on the models folder's disk (refused before the first byte otherwise).
        public var downloadReserveBytes = 1 << 30
        /// Bytes kept free on every GPU (a desktop, other programs): taken off each GPU's budget.
        public var gpuOverheadBytes = 0

        public init() {}
        enum CodingKeys: String, CodingKey {
            case maxLoadedModels = "max_loaded_models", memoryBudget = "memory_budget", defaultTTLSeconds = "default_ttl_seconds"
            case queueSize = "queue_size", requestBodyBytes = "request_body_bytes", unloadTimeoutSeconds = "unload_timeout_seconds"
            case swapPolicy = "swap_policy", maxWaitSeconds = "max_wait_seconds", residentIdleSeconds = "resident_idle_seconds"
            case stopAbandonedLoads = "stop_abandoned_loads", slotCacheBytes = "slot_cache_bytes"
            case downloadReserveBytes = "download_reserve_bytes", gpuOverheadBytes = "gpu_overhead_bytes"
        }
        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            let d = Limits()
            maxLoadedModels = try c.decodeIfPresent(Int.self, forKey: .maxLoadedModels) ?? d.maxLoadedModels
            memoryBudget = try c.decodeIfPresent(JSONValue.self, forKey: .memoryBudget) ?? d.memoryBudget
            defaultTTLSeconds = try c.decodeIfPresent(Int.self, forKey: .defaultTTLSeconds) ?? d.defaultTTLSeconds
            queueSize = try c.decodeIfPresent(Int.self, forKey: .queueSize) ?? d.queueSize
            requestBodyBytes = try c.decodeIfPresent(Int.self, forKey: .requestBodyBytes) ?? d.requestBodyBytes
            unloadTimeoutSeconds = try c.decodeIfPresent(Int.self, forKey: .unloadTimeoutSeconds) ?? d.unloadTimeoutSeconds
            swapPolicy = try c.decodeIfPresent(SwapPolicyName.self, forKey: .swapPolicy) ?? d.swapPolicy
            maxWaitSeconds = try c.decodeIfPresent(Double.self, forKey: .maxWaitSeconds) ?? d.maxWaitSeconds
            residentIdleSeconds = try c.decodeIfPresent(Double.self, forKey: .residentIdleSeconds) ?? d.residentIdleSeconds
            stopAbandonedLoads = try c.decodeIfPresent(Bool.self, forKey: .stopAbandonedLoads) ?? d.stopAbandonedLoads
            slotCacheBytes = try c.decodeIfPresent(Int.self, forKey: .slotCacheBytes) ?? d.slotCacheBytes
            downloadReserveBytes = try c.decodeIfPresent(Int.self, forKey: .downloadReserveBytes) ?? d.downloadReserveBytes
            gpuOverheadBytes = try c.decodeIfPresent(Int.self, forKey: .gpuOverheadBytes) ?? d.gpuOverheadBytes
        }
    }

    /// Where devices are read from (`hardware`): runner-manager's inventory.
    public struct Hardware: Codable, Sendable, Equatable {
        /// Read NVIDIA GPUs through NVML when it loads.
        public var nvml = true
        /// nvidia-smi when NVML cannot be used; "" = never.
        public var nvidiaSMI = "nvidia-smi"
        /// AMD GPUs from `<root>/class/drm/card*/device`.
        public var sysfsRoot = "/sys"
        public var sampleIntervalSeconds: Double = 2

        public init() {}
        enum CodingKeys: String, CodingKey {
            case nvml, nvidiaSMI = "nvidia_smi", sysfsRoot = "sysfs_root", sampleIntervalSeconds = "sample_interval_seconds"
        }
        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            let d = Hardware()
            nvml = try c.decodeIfPresent(Bool.self, forKey: .nvml) ?? d.nvml
            nvidiaSMI = try c.decodeIfPresent(String.self, forKey: .nvidiaSMI) ?? d.nvidiaSMI
            sysfsRoot = try c.decodeIfPresent(String.self, forKey: .sysfsRoot) ?? d.sysfsRoot
            sampleIntervalSeconds = try c.decodeIfPresent(Double.self, forKey: .sampleIntervalSeconds) ?? d.sampleIntervalSeconds
        }
    }

    /// The values of `limits.swap_policy`.
    public enum SwapPolicyName: String, Codable, Sendable, Equatable, CaseIterable {
        case batch, fifo
    }

    public var ollama: Proxy
    public var lmstudio: Proxy
    public var dashboard: Dashboard
    public var http: HTTPSettings
    /// Folders scanned for GGUF files; relative paths resolve against the config directory.
    public var modelsDirs: [String]
    /// Other tools' caches indexed in place (`paths.import`): per tool, false (off), a folder, or
    /// absent/true (the tool's own default folder).
    public var importSources: JSONValue?
    /// The state directory when neither `--state-dir` nor `LLAMA_RUNNER_STATE_DIR` is given.
    public var stateDir: String?
    public var runtimes: [String: Runtime]
    public var limits: Limits
    /// Seconds between model discovery scans (0 = only at start and on request).
    public var discoveryIntervalSeconds: Int
    /// Per service (`default` for the rest): trace, debug, info, warning, error.
    public var logLevels: [String: String]
    /// Host names accepted in the `Host` header beyond the loopback ones (`HostPolicy`); a name may
    /// start with `*.` for a whole domain.
    public var allowedHosts: [String]
    /// A model id kept loaded: loaded at start and again once the machine is idle after others displaced it.
    public var residentModel: String?
    /// The Hugging Face Hub (or a mirror) pulls download from; `HF_ENDPOINT` overrides it; nil = the public hub.
    public var hubEndpoint: String?
    public var hardware = Hardware()
    /// Other servers whose models are offered as `<name>/<model>`, by name.
    public var peers: [String: Peer] = [:]
    /// This machine's runner-manager serving another machine's gateway (nil: loopback only).
    public var runnerHost: RunnerHost?
    /// Other machines' runner-managers this gateway uses besides its own, by name.
    public var hosts: [String: RemoteHost] = [:]

    /// The settings the gateway reads only when it starts (its ports, their limits and guards), by key:
    /// those that differ between `self` (what it started with) and `now` need a gateway restart.
    public func gatewayRestartKeys(now: AppConfig) -> [String] {
        var keys: [String] = []
        if ollama != now.ollama { keys.append("proxies.ollama") }
        if lmstudio != now.lmstudio { keys.append("proxies.lmstudio") }
        if dashboard != now.dashboard { keys.append("dashboard") }
        if http != now.http { keys.append("http") }
        if allowedHosts != now.allowedHosts { keys.append("allowed_hosts") }
        if limits.requestBodyBytes != now.limits.requestBodyBytes { keys.append("limits.request_body_bytes") }
        if limits.defaultTTLSeconds != now.limits.defaultTTLSeconds { keys.append("limits.default_ttl_seconds") }
        return keys
    }

    /// The first models folder, absolute: where pulls download to (`<user>/<repo>/`) and uploaded
    /// blobs are stored (`.blobs/`, a dot folder discovery does not list). Nil when there is none.
    public func primaryModelsFolder(configDir: String) -> String? { modelsDirs.first.map { resolvePath($0, configDir: configDir) } }

    /// Where Ollama's uploaded blobs (`POST /api/blobs/sha256:…`) are stored.
    public func blobFolder(configDir: String) -> String? { primaryModelsFolder(configDir: configDir).map { $0 + "/.blobs" } }

    /// The runtimes present when a config names none: `llama-server` and `whisper-server` from PATH or
    /// the project's install.
    public static let defaultRuntimes = ["llama-server": Runtime(kind: .llamaServer, path: "llama-server"),
                                         "whisper-server": Runtime(kind: .whisperServer, path: "whisper-server")]

    public init() {
        ollama = Proxy(port: 11434)
        lmstudio = Proxy(port: 1234)
        dashboard = Dashboard()
        http = HTTPSettings()
        modelsDirs = ["../models"]
        stateDir = nil
        runtimes = Self.defaultRuntimes
        limits = Limits()
        discoveryIntervalSeconds = 30
        logLevels = ["default": "info"]
        allowedHosts = []
        residentModel = nil
    }

    enum CodingKeys: String, CodingKey {
        case proxies, dashboard, http, paths, runtimes, limits
        case discoveryIntervalSeconds = "discovery_interval_seconds", logLevels = "log_levels", allowedHosts = "allowed_hosts"
        case residentModel = "resident_model", hub, hardware, peers, runnerHost = "runner_host", hosts
    }
    enum HubKeys: String, CodingKey { case endpoint }
    enum ProxyKeys: String, CodingKey { case ollama, lmstudio }
    enum PathKeys: String, CodingKey { case modelsDirs = "models_dirs", stateDir = "state_dir", importSources = "import" }

    public init(from decoder: any Decoder) throws {
        self.init()
        let c = try decoder.container(keyedBy: CodingKeys.self)
        if c.contains(.proxies) {
            let p = try c.nestedContainer(keyedBy: ProxyKeys.self, forKey: .proxies)
            ollama = try p.decodeIfPresent(Proxy.self, forKey: .ollama) ?? ollama
            lmstudio = try p.decodeIfPresent(Proxy.self, forKey: .lmstudio) ?? lmstudio
        }
        dashboard = try c.decodeIfPresent(Dashboard.self, forKey: .dashboard) ?? dashboard
        http = try c.decodeIfPresent(HTTPSettings.self, forKey: .http) ?? http
        if c.contains(.paths) {
            let p = try c.nestedContainer(keyedBy: PathKeys.self, forKey: .paths)
            modelsDirs = try p.decodeIfPresent([String].self, forKey: .modelsDirs) ?? modelsDirs
            stateDir = try p.decodeIfPresent(String.self, forKey: .stateDir)
            importSources = try p.decodeIfPresent(JSONValue.self, forKey: .importSources)
        }
        runtimes = try c.decodeIfPresent([String: Runtime].self, forKey: .runtimes) ?? runtimes
        limits = try c.decodeIfPresent(Limits.self, forKey: .limits) ?? limits
        discoveryIntervalSeconds = try c.decodeIfPresent(Int.self, forKey: .discoveryIntervalSeconds) ?? discoveryIntervalSeconds
        logLevels = try c.decodeIfPresent([String: String].self, forKey: .logLevels) ?? logLevels
        allowedHosts = try c.decodeIfPresent([String].self, forKey: .allowedHosts) ?? allowedHosts
        residentModel = try c.decodeIfPresent(String.self, forKey: .residentModel)
        if c.contains(.hub) {
            hubEndpoint = try c.nestedContainer(keyedBy: HubKeys.self, forKey: .hub).decodeIfPresent(String.self, forKey: .endpoint)
        }
        hardware = try c.decodeIfPresent(Hardware.self, forKey: .hardware) ?? hardware
        peers = try c.decodeIfPresent([String: Peer].self, forKey: .peers) ?? [:]
        runnerHost = try c.decodeIfPresent(RunnerHost.self, forKey: .runnerHost)
        hosts = try c.decodeIfPresent([String: RemoteHost].self, forKey: .hosts) ?? [:]
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        var p = c.nestedContainer(keyedBy: ProxyKeys.self, forKey: .proxies)
        try p.encode(ollama, forKey: .ollama)
        try p.encode(lmstudio, forKey: .lmstudio)
        try c.encode(dashboard, forKey: .dashboard)
        try c.encode(http, forKey: .http)
        var paths = c.nestedContainer(keyedBy: PathKeys.self, forKey: .paths)
        try paths.encode(modelsDirs, forKey: .modelsDirs)
        try paths.encodeIfPresent(stateDir, forKey: .stateDir)
        try paths.encodeIfPresent(importSources, forKey: .importSources)
        try c.encode(runtimes, forKey: .runtimes)
        try c.encode(limits, forKey: .limits)
        try c.encode(discoveryIntervalSeconds, forKey: .discoveryIntervalSeconds)
        try c.encode(logLevels, forKey: .logLevels)
        try c.encode(allowedHosts, forKey: .allowedHosts)
        try c.encodeIfPresent(residentModel, forKey: .residentModel)
        if let hubEndpoint {
            var hub = c.nestedContainer(keyedBy: HubKeys.self, forKey: .hub)
            try hub.encode(hubEndpoint, forKey: .endpoint)
        }
        if hardware != Hardware() { try c.encode(hardware, forKey: .hardware) }
        if !peers.isEmpty { try c.encode(peers, forKey: .peers) }
        try c.encodeIfPresent(runnerHost, forKey: .runnerHost)
        if !hosts.isEmpty { try c.encode(hosts, forKey: .hosts) }
    }

    /// The typed view of a validated document.
    public static func from(_ document: JSONValue) throws -> AppConfig {
        try JSONCoder.decode(AppConfig.self, from: document)
    }

    /// Loads `<configDir>/app_config.json`; a missing file gives the defaults.
    public static func load(configDir: String) throws(ConfigError) -> AppConfig {
        let path = configDir + "/app_config.json"
        guard let bytes = readFileBytes(path) else { return AppConfig() }
        do {
            return try JSONCoder.decode(AppConfig.self, from: bytes)
        } catch {
            throw ConfigError(file: "app_config.json", message: describeDecodingError(error))
        }
    }
}

/// A configuration file that cannot be used, with the file and the fault.
public struct ConfigError: Error, CustomStringConvertible, Sendable, Equatable {
    public let file: String
    public let message: String
    public init(file: String, message: String) {
        self.file = file
        self.message = message
    }
    public var description: String { file.isEmpty ? message : "\(file): \(message)" }
}

extension AppConfig {
    /// One public listening port the gateway serves.
    public struct PublicPort: Sendable, Equatable {
        /// Its name when handed down as a socket (`LISTEN_FDNAMES`, a systemd `FileDescriptorName=`).
        public let name: String
        /// The config key of its port, for messages.
        public let key: String
        public let host: String
        public let port: UInt16
    }

    /// The enabled public ports: Ollama, LM Studio, the dashboard's API and web.
    public var publicPorts: [PublicPort] {
        var ports: [PublicPort] = []
        if ollama.enabled { ports.append(PublicPort(name: "ollama", key: "proxies.ollama.port", host: ollama.host, port: ollama.port)) }
        if lmstudio.enabled { ports.append(PublicPort(name: "lmstudio", key: "proxies.lmstudio.port", host: lmstudio.host, port: lmstudio.port)) }
        if dashboard.enabled {
            ports.append(PublicPort(name: "dashboard-api", key: "dashboard.api_port", host: dashboard.host, port: dashboard.apiPort))
            ports.append(PublicPort(name: "dashboard-web", key: "dashboard.web_port", host: dashboard.host, port: dashboard.webPort))
        }
        return ports
    }
}
