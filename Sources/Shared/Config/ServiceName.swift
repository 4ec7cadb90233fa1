/// The four supervised services: executable names, socket names and start order.
public enum ServiceName: String, Sendable, Codable, CaseIterable, CustomStringConvertible {
    case registry = "model-registry"
    case metrics = "metrics-service"
    case runners = "runner-manager"
    case gateway = "gateway"

    /// The order `launcher up` starts them in; shutdown is the reverse (gateway first).
    public static let startOrder: [ServiceName] = [.registry, .metrics, .runners, .gateway]

    /// The executable's file name (beside the launcher's own binary).
    public var executable: String { rawValue }

    /// The control socket's file name in `<state>/run/`.
    public var socketName: String {
        switch self {
        case .registry: "registry.sock"
        case .metrics: "metrics.sock"
        case .runners: "runners.sock"
        case .gateway: "gateway.sock"
        }
    }

    /// Accepts the executable name or the short name (`registry`, `metrics`, `runners`).
    public init?(argument: String) {
        switch argument {
        case "model-registry", "registry": self = .registry
        case "metrics-service", "metrics": self = .metrics
        case "runner-manager", "runners": self = .runners
        case "gateway": self = .gateway
        default: return nil
        }
    }

    public var description: String { rawValue }
}

/// Version of Llama Runner itself.
public enum LlamaRunnerVersion {
    public static let current = "0.1.0"
}

/// Process exit codes shared by every executable (see docs/ARCHITECTURE.md).
public enum ExitCode {
    public static let ok: Int32 = 0
    /// A runtime failure.
    public static let failure: Int32 = 1
    /// Bad command-line usage (sysexits EX_USAGE).
    public static let usage: Int32 = 64
    /// A required service or file is unavailable (EX_UNAVAILABLE).
    public static let unavailable: Int32 = 69
    /// Configuration error, including a port already in use: the launcher does not retry it (EX_CONFIG).
    public static let config: Int32 = 78
}
