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
