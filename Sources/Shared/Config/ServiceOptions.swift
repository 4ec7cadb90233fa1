/// The command line every service and the launcher share: `--state-dir`, `--config-dir`,
/// `--log-level` (and the environment variables `LLAMA_RUNNER_STATE_DIR`, `LLAMA_RUNNER_CONFIG_DIR`,
/// `LLAMA_RUNNER_LOG_LEVEL`), plus free arguments (the launcher's subcommand).
public struct ServiceOptions: Sendable {
    public var paths: RuntimePaths
    public var logLevel: LogLevel
    /// Whether the level came from `--log-level` or the environment (and so is passed on to children);
    /// otherwise each service takes its own from `log_levels` in `app_config.json`.
    public var logLevelExplicit: Bool
    /// Whether log lines also go to stderr (`LLAMA_RUNNER_LOG_STDERR=0` turns it off; the launcher
    /// sets that for its children, whose lines are in their log files already).
    public var logToStderr: Bool
    /// Arguments that are not options.
    public var arguments: [String]
    /// `--help` was given.
    public var wantsHelp: Bool

    /// Errors of parsing the command line.
    public struct UsageError: Error, CustomStringConvertible, Sendable {
        public let message: String
        public var description: String { message }
    }

    /// Parses `arguments` (without argv[0]) with the environment as fallback.
    public static func parse(_ arguments: [String], environment: [String: String] = ProcessEnvironment.all(),
                             service: String? = nil) throws -> ServiceOptions {
        var stateDir = environment["LLAMA_RUNNER_STATE_DIR"]
        var configDir = environment["LLAMA_RUNNER_CONFIG_DIR"]
        var level = environment["LLAMA_RUNNER_LOG_LEVEL"].flatMap(LogLevel.init(name:))
        var rest: [String] = []
        var help = false
        var i = 0
        func value(_ flag: String) throws -> String {
            i += 1
            guard i < arguments.count, !arguments[i].hasPrefix("--") else { throw UsageError(message: "\(flag) needs a value") }
            return arguments[i]
        }
        while i < arguments.count {
            let arg = arguments[i]
            var flag = arg
            var inline: String?
            if arg.hasPrefix("--"), let eq = arg.firstIndex(of: "=") {
                flag = String(arg[..<eq])
                inline = String(arg[arg.index(after: eq)...])
            }
            switch flag {
            case "--state-dir": stateDir = try inline ?? value(flag)
            case "--config-dir": configDir = try inline ?? value(flag)
            case "--log-level":
                let name = try inline ?? value(flag)
                guard let l = LogLevel(name: name) else { throw UsageError(message: "--log-level: unknown level \(name) (trace, debug, info, warning, error)") }
                level = l
            case "--help", "-h": help = true
            case "--health": rest.append(arg)
            default:
                if arg.hasPrefix("-") && arg != "-" {
                    throw UsageError(message: "unknown option \(arg)")
                }
                rest.append(arg)
            }
            i += 1
        }
        let config = absolutePath(configDir ?? "config")
        let appDocument = readFileBytes(config + "/app_config.json").flatMap { try? JSONParser.parse($0, lenientEscapes: true).0 }
        if stateDir == nil, let configured = appDocument?["paths"]?["state_dir"]?.stringValue {
            stateDir = configured.hasPrefix("/") ? configured : config + "/" + configured
        }
        let explicit = level != nil
        if level == nil, let levels = appDocument?["log_levels"] {
            level = (service.flatMap { levels[$0]?.stringValue } ?? levels["default"]?.stringValue).flatMap(LogLevel.init(name:))
        }
        let paths = RuntimePaths(stateDir: stateDir ?? "state", configDir: config)
        return ServiceOptions(paths: paths, logLevel: level ?? .info, logLevelExplicit: explicit,
                              logToStderr: environment["LLAMA_RUNNER_LOG_STDERR"] != "0",
                              arguments: rest, wantsHelp: help)
    }

    /// The flags that pass these directories on to a child service.
    public var childArguments: [String] {
        ["--state-dir", paths.stateDir, "--config-dir", paths.configDir] + (logLevelExplicit ? ["--log-level", logLevel.name] : [])
    }

    /// Help text for the shared options.
    public static let helpText = """
      --state-dir DIR    state directory: logs/ and run/ (env LLAMA_RUNNER_STATE_DIR; else paths.state_dir
                         in app_config.json; default ./state)
      --config-dir DIR   config directory with app_config.json, models_config.json
                         (env LLAMA_RUNNER_CONFIG_DIR; default ./config)
      --log-level LEVEL  trace, debug, info, warning or error (env LLAMA_RUNNER_LOG_LEVEL; else log_levels
                         in app_config.json, by service name or "default"; default info)
      -h, --help         show this help
    """
}
