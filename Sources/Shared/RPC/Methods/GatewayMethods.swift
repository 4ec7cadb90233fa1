/// Methods of the gateway's own control socket.
public enum GatewayRPC {
    /// The runner-managers it places models on, with their state (`launcher status` shows them).
    public enum Hosts: RPCMethod {
        public typealias Params = Empty
        public typealias Result = [HostStatus]
        public static let name = "gateway.hosts"
    }
}

/// Whether a host's runner-manager answered its last heartbeat.
public enum HostState: String, Codable, Sendable {
    case unknown, up, down
}

/// One host as the dashboard and `launcher status` show it (`GET /api/hosts`).
public struct HostStatus: Codable, Sendable, Equatable {
    public var name: String
    /// `local` (this machine's runner-manager, on its Unix socket) or the remote control address.
    public var address: String
    public var state: HostState
    public var error: String?
    /// Unix seconds of the last answer.
    public var lastSeenAt: Double?
    /// The host's own name for itself (`runner_host.name` or its machine name).
    public var reportedName: String?
    public var models: [String]
    public var freeBytes: Int?
    public var devices: [Device]
    public var runners: [RunnerInfo]
    public init(name: String, address: String, state: HostState, error: String?, lastSeenAt: Double?, reportedName: String?, models: [String],
                freeBytes: Int?, devices: [Device], runners: [RunnerInfo]) {
        self.name = name
        self.address = address
        self.state = state
        self.error = error
        self.lastSeenAt = lastSeenAt
        self.reportedName = reportedName
        self.models = models
        self.freeBytes = freeBytes
        self.devices = devices
        self.runners = runners
    }
}
