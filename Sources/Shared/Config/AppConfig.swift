import FoundationEssentials

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

        public init(enabled: Bool = true, host: String = "127.0.0.1", port: UInt16, apiKeys: [String] = []) {
            self.enabled = enabled
            self.host = host
            self.port = port
            self.apiKeys = apiKeys
        }

        enum CodingKeys: String, CodingKey { case enabled, host, port, apiKeys = "api_keys" }
        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            enabled = try c.decodeIfPresent(Bool.self, forKey: .enabled) ?? true
            host = try c.decodeIfPresent(String.self, forKey: .host) ?? "127.0.0.1"
            port = try c.decode(UInt16.self, forKey: .port)
            apiKeys = try c.decodeIfPresent([String].self, forKey: .apiKeys) ?? []
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

        public init() {}
        enum CodingKeys: String, CodingKey { case enabled, host, apiPort = "api_port", webPort = "web_port", adminToken = "admin_token" }
        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            enabled = try c.decodeIfPresent(Bool.self, forKey: .enabled) ?? true
            host = try c.decodeIfPresent(String.self, forKey: .host) ?? "127.0.0.1"
            apiPort = try c.decodeIfPresent(UInt16.self, forKey: .apiPort) ?? 8585
            webPort = try c.decodeIfPresent(UInt16.self, forKey: .webPort) ?? 8080
            adminToken = try c.decodeIfPresent(String.self, forKey: .adminToken)
        }
    }

    /// HTTP limits and timeouts of the public ports.
    public struct HTTPSettings: Codable, Sendable, Equatable {
        public var maxHeaderBytes = 65536
        public var maxBodyBytes = 100 << 20
        public var headerTimeoutSeconds: Double = 10
        public var keepAliveTimeoutSeconds: Double = 60
        public var bodyTimeoutSeconds: Double = 60

        public init() {}
        enum CodingKeys: String, CodingKey {
            case maxHeaderBytes = "max_header_bytes", maxBodyBytes = "max_body_bytes"
            case headerTimeoutSeconds = "header_timeout_seconds", keepAliveTimeoutSeconds = "keep_alive_timeout_seconds"
            case bodyTimeoutSeconds = "body_timeout_seconds"
        }
        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            let d = HTTPSettings()
            maxHeaderBytes = try c.decodeIfPresent(Int.self, forKey: .maxHeaderBytes) ?? d.maxHeaderBytes
            maxBodyBytes = try c.decodeIfPresent(Int.self, forKey: .maxBodyBytes) ?? d.maxBodyBytes
            headerTimeoutSeconds = try c.decodeIfPresent(Double.self, forKey: .headerTimeoutSeconds) ?? d.headerTimeoutSeconds
            keepAliveTimeoutSeconds = try c.decodeIfPresent(Double.self, forKey: .keepAliveTimeoutSeconds) ?? d.keepAliveTimeoutSeconds
            bodyTimeoutSeconds = try c.decodeIfPresent(Double.self, forKey: .bodyTimeoutSeconds) ?? d.bodyTimeoutSeconds
        }

        /// The server configuration these settings describe.
        public var serverConfiguration: HTTPServer.Configuration {
            var c = HTTPServer.Configuration()
            c.limits.maxHeaderBytes = maxHeaderBytes
            c.limits.maxBodyBytes = maxBodyBytes
            c.headerTimeout = headerTimeoutSeconds
            c.keepAliveTimeout = keepAliveTimeoutSeconds
            c.bodyTimeout = bodyTimeoutSeconds
            return c
        }
    }

    public var ollama: Proxy
    public var lmstudio: Proxy
    public var dashboard: Dashboard
    public var http: HTTPSettings
    /// Folders scanned for GGUF files; relative paths resolve against the config directory.
    public var modelsDirs: [String]

    public init() {
        ollama = Proxy(port: 11434)
        lmstudio = Proxy(port: 1234)
        dashboard = Dashboard()
        http = HTTPSettings()
        modelsDirs = ["../models"]
    }

    enum CodingKeys: String, CodingKey { case proxies, dashboard, http, paths }
    enum ProxyKeys: String, CodingKey { case ollama, lmstudio }
    enum PathKeys: String, CodingKey { case modelsDirs = "models_dirs" }

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
        }
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
    }

    /// Loads `<configDir>/app_config.json`; a missing file gives the defaults.
    public static func load(configDir: String) throws(ConfigError) -> AppConfig {
        let path = configDir + "/app_config.json"
        guard let bytes = readFileBytes(path) else { return AppConfig() }
        do {
            return try JSONDecoder().decode(AppConfig.self, from: Data(bytes))
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
    public var description: String { "\(file): \(message)" }
}
