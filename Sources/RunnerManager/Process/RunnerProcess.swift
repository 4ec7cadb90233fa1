import Glibc
import Shared

/// Errors of starting a runner, with the log lines a user needs.
enum RunnerError: Error, CustomStringConvertible {
    case spawnFailed(String)
    case exitedDuringLoad(ExitStatus, [String])
    case stalled(Double, [String])
    case runtimeMissing(String)

    var description: String {
        switch self {
        case .spawnFailed(let m): m
        case .exitedDuringLoad(let status, let tail): "the runner \(status) while loading" + Self.format(tail)
        case .stalled(let s, let tail): "no loading progress for \(Int(s)) s" + Self.format(tail)
        case .runtimeMissing(let m): m
        }
    }

    static func format(_ tail: [String]) -> String {
        tail.isEmpty ? "" : "; last log lines: " + tail.suffix(8).joined(separator: " | ")
    }
}

/// One runner process: spawned by this manager (a `ChildProcess`, reaped by it) or adopted from a
/// previous manager (known by its /proc identity, watched by polling).
final class RunnerProcess: @unchecked Sendable {
    // @unchecked Sendable: the mutable fields are used only from the RunnerManager actor.
    let model: String
    let identity: ProcessIdentity
    let port: UInt16
    let argv: [String]
    let fingerprint: String
    let log: RunnerLog
    let child: ChildProcess?
    let kind: RuntimeKind
    let spawnedAt = monotonicNanos()
    let health: HTTPClient
    /// The address in its endpoint (loopback, or a host's address for remote gateways).
    let host: String
    /// Its API key (a runner reached from other machines), sent by whoever calls it.
    let apiKey: String?
    /// True while the load is watched by `waitReady`; its exit is then that method's to report.
    var loading = true
    /// The latest meaningful log line while loading (shown as progress).
    var progressLine: String?
    /// The progress line last sent in a `runners.state` notification.
    var notifiedProgress: String?

    var pid: Int32 { identity.pid }
    var endpoint: String { host.contains(":") ? "http://[\(host)]:\(port)" : "http://\(host):\(port)" }
    var adopted: Bool { child == nil }

    private init(model: String, identity: ProcessIdentity, port: UInt16, argv: [String], fingerprint: String,
                 log: RunnerLog, child: ChildProcess?, kind: RuntimeKind, loop: EventLoop, host: String = "127.0.0.1",
                 localHost: String = "127.0.0.1", apiKey: String? = nil) {
        self.host = host
        self.apiKey = apiKey
        self.model = model
        self.identity = identity
        self.port = port
        self.argv = argv
        self.fingerprint = fingerprint
        self.log = log
        self.child = child
        self.kind = kind
        health = HTTPClient(address: .tcp(host: localHost, port: port), loop: loop, maxIdleConnections: 1, connectTimeout: 1,
                            defaultHeaders: apiKey.map { ["Authorization": "Bearer \($0)"] } ?? HTTPHeaders())
    }

    static func locate(_ runtime: String) -> String? { RuntimeLocator.locate(runtime) }

    /// Spawns the runner on a free loopback port; stdout and stderr append to its log file.
    /// - Parameters:
    ///   - model: the model with its placement's parameters already applied.
    ///   - environment: set over runner-manager's own (the placement's visible GPUs).
    ///   - fingerprint: the spec's (of the model as configured, before placement), what adoption and
    ///     the slot cache match on; by default the model's own.
    static func spawn(_ model: ResolvedModel, logsDir: String, extraArguments: [String] = [], environment placed: [String: String] = [:],
                      fingerprint: String? = nil, network: RunnerNetwork = .loopback, loop: EventLoop) throws -> RunnerProcess {
        guard let binary = locate(model.runtimePath) else {
            throw RunnerError.runtimeMissing("runtime \(model.runtime) (\(model.runtimePath)) not found: run scripts/bootstrap.sh, or set its path in app_config.json runtimes")
        }
        guard access(model.path, R_OK) == 0 else {
            throw RunnerError.spawnFailed("model file \(model.path) is missing: run scripts/bootstrap.sh for the demo model, or fix model_path")
        }
        let address = network.addresses(model.runtimeKind)
        let port = try freePort(on: address.bind)
        let key = network.isRemote(model.runtimeKind) ? try network.issueKey(model: model.id) : nil
        let arguments = RunnerArguments.build(model, host: address.bind, port: port) + extraArguments + (key?.arguments ?? [])
        try makeDirectories(logsDir)
        let logPath = "\(logsDir)/\(safeName(model.id)).log"
        let log = RunnerLog(path: logPath, startAtEnd: true)
        let header = "=== \(Logger.timestamp()) starting \(binary) \(arguments.joined(separator: " "))\n"
        LogFile(path: logPath, maxBytes: Int.max).append(Array(header.utf8))
        let child: ChildProcess
        do {
            let extra = BufferSizes.environment(for: model).merging(placed) { _, new in new }
            let environment = extra.isEmpty ? nil : ProcessEnvironment.all().merging(extra) { _, new in new }
            child = try ChildProcess.spawn(binary, arguments: arguments, environment: environment, output: .file(logPath))
        } catch {
            throw RunnerError.spawnFailed("\(error)")
        }
        let identity = ProcessIdentity.of(child.pid) ?? ProcessIdentity(pid: child.pid, startTime: 0)
        return RunnerProcess(model: model.id, identity: identity, port: port, argv: [binary] + arguments,
                             fingerprint: fingerprint ?? RunnerArguments.fingerprint(model), log: log, child: child, kind: model.runtimeKind, loop: loop,
                             host: address.reachable, localHost: address.local, apiKey: key?.key)
    }

    /// Takes over a runner a previous manager started.
    static func adopt(_ record: RunnerRecord, kind: RuntimeKind, loop: EventLoop) -> RunnerProcess {
        let log = RunnerLog(path: record.logPath, startAtEnd: true)
        let local = record.host.map { $0 == "0.0.0.0" ? "127.0.0.1" : $0 } ?? "127.0.0.1"
        let p = RunnerProcess(model: record.model, identity: record.process, port: record.port, argv: record.argv,
                              fingerprint: record.fingerprint, log: log, child: nil, kind: kind, loop: loop,
                              host: record.host ?? "127.0.0.1", localHost: local, apiKey: record.apiKey)
        p.loading = false
        return p
    }

    var record: RunnerRecord {
        RunnerRecord(model: model, process: identity, port: port, fingerprint: fingerprint, argv: argv, logPath: log.path,
                     host: host == "127.0.0.1" ? nil : host, apiKey: apiKey)
    }

    var isAlive: Bool { child.map(\.isRunning) ?? identity.isAlive }

    /// Answers `GET /health` with 200 (llama-server and whisper-server: once the model is loaded).
    func isHealthy(timeout: Double = 0.5) async -> Bool {
        guard let r = try? await health.send(HTTPClientRequest(target: "/health"), timeout: timeout) else { return false }
        _ = try? await r.collect(upTo: 1 << 20)
        return r.status.code == 200
    }

    /// Lines llama-server (and whisper-server) print the moment they can serve: seeing one triggers an
    /// immediate health check instead of waiting for the next poll.
    static let readyMarkers = ["listening on", "model loaded", "server is listening", "HTTP server listening"]

    /// Polls health every 50 ms until ready, tailing the log every 2 ms: a line that says the server
    /// is up triggers a health check at once, so readiness is seen within ~2 ms, not up to 50 (a load
    /// takes ~200 ms, so ~100 reads of the log's new bytes). Fails at
    /// once if the process exits (with its last log lines), or after `stallTimeout` seconds without
    /// progress (new log output counts as progress).
    func waitReady(stallTimeout: Double, loop: EventLoop) async throws {
        var lastProgress = monotonicNanos()
        var lastCheck: UInt64 = 0
        var seen = log.bytesSeen
        while true {
            let fresh = log.poll()
            var checkNow = false
            if log.bytesSeen != seen {
                seen = log.bytesSeen
                lastProgress = monotonicNanos()
                if let line = fresh.last(where: { !$0.trimmingCharacters(in: " .").isEmpty }) { progressLine = line }
                checkNow = fresh.contains { line in Self.readyMarkers.contains { line.containsText($0) } }
            }
            if let status = child?.exitStatus {
                log.poll()
                throw RunnerError.exitedDuringLoad(status, log.tail(12))
            }
            if child == nil && !identity.isAlive { throw RunnerError.exitedDuringLoad(.exited(-1), log.tail(12)) }
            if checkNow || monotonicNanos() - lastCheck >= 50_000_000 {
                lastCheck = monotonicNanos()
                if await isHealthy(timeout: 1) { return }
            }
            if Double(monotonicNanos() - lastProgress) / 1e9 > stallTimeout {
                throw RunnerError.stalled(stallTimeout, log.tail(12))
            }
            try await loop.sleep(seconds: 0.002)
        }
    }

    /// Waits for the process to end; nil status for an adopted one (not our child, so not reapable).
    func waitExit(loop: EventLoop) async -> ExitStatus? {
        if let child { return await child.wait() }
        while identity.isAlive { try? await loop.sleep(seconds: 0.25) }
        return nil
    }

    /// SIGTERM to its process group, SIGKILL after `grace`, and reaped (or gone, if adopted).
    func stop(grace: Double, loop: EventLoop) async {
        health.closeIdle()
        if let child {
            await child.terminate(grace: grace, loop: loop)
        } else {
            await identity.terminate(grace: grace, loop: loop)
        }
    }

    var rssBytes: Int? { ProcessIdentity.residentBytes(pid) }

    static func freePort(on host: String = "127.0.0.1") throws -> UInt16 {
        let l = try Listener(.tcp(host: host, port: 0), loop: .shared)
        defer { l.close() }
        return l.port
    }

    static func safeName(_ id: String) -> String {
        String(id.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "." || $0 == "_" ? $0 : "_" })
    }
}

