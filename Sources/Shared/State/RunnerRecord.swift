import Glibc

/// One live runner as recorded in `<state>/run/runners.json`, so a restarted runner-manager can adopt
/// it and a stopping launcher can make sure none is left behind.
public struct RunnerRecord: Codable, Sendable, Equatable {
    public var model: String
    public var process: ProcessIdentity
    public var port: UInt16
    public var fingerprint: String
    public var argv: [String]
    public var logPath: String
    /// The address it listens on, when not loopback (a host serving remote gateways).
    public var host: String?
    /// Its API key, when it has one (the file is private to runner-manager's user).
    public var apiKey: String?

    public init(model: String, process: ProcessIdentity, port: UInt16, fingerprint: String, argv: [String], logPath: String,
                host: String? = nil, apiKey: String? = nil) {
        self.host = host
        self.apiKey = apiKey
        self.model = model
        self.process = process
        self.port = port
        self.fingerprint = fingerprint
        self.argv = argv
        self.logPath = logPath
    }

    public static func path(_ paths: RuntimePaths) -> String { paths.runDir + "/runners.json" }

    public static func load(_ paths: RuntimePaths) -> [RunnerRecord] {
        guard let bytes = readFileBytes(path(paths)) else { return [] }
        return (try? JSONCoder.decode([RunnerRecord].self, from: bytes)) ?? []
    }

    public static func save(_ records: [RunnerRecord], _ paths: RuntimePaths) throws {
        try AtomicFile.write(try JSONCoder.encode(records, sortedKeys: true, pretty: true), to: path(paths), mode: 0o600)
    }
}
