import Glibc
import Synchronization

/// What a service's components get from the common host: its name, directories, logger, control
/// socket server and event loop.
public final class ServiceContext: Sendable {
    public let name: ServiceName
    public let options: ServiceOptions
    public let logger: Logger
    /// The service's `<state>/run/<name>.sock` server; register the service's own methods on it.
    public let rpc: RPCServer
    public let loop: EventLoop
    /// The service's periodic work, stopped (and awaited) first when the service stops.
    public let periodic: PeriodicWork
    /// Monotonic ns at process start.
    public let startedAt: UInt64
    let group = Mutex<ServiceGroup?>(nil)
    let health = Mutex<(status: HealthStatus, detail: String?)>((.ok, nil))

    init(name: ServiceName, options: ServiceOptions, logger: Logger, rpc: RPCServer, loop: EventLoop) {
        self.name = name
        self.options = options
        self.logger = logger
        self.rpc = rpc
        self.loop = loop
        periodic = PeriodicWork(loop: loop)
        startedAt = monotonicNanos()
    }

    public var paths: RuntimePaths { options.paths }

    /// Sets what `health` reports (`ok` or `degraded` with a reason).
    public func setHealth(_ status: HealthStatus, detail: String? = nil) {
        health.withLock { $0 = (status, detail) }
    }

    /// The current health answer.
    public func healthInfo() -> HealthInfo {
        let (status, detail) = health.withLock { $0 }
        let stopping = group.withLock { $0?.isShuttingDown ?? false }
        return HealthInfo(service: name.rawValue, pid: getpid(), version: LlamaRunnerVersion.current,
                          uptimeSeconds: Double(monotonicNanos() - startedAt) / 1e9,
                          status: stopping ? .stopping : status, detail: detail)
    }

    /// Begins a graceful stop of the whole service.
    public func requestShutdown(reason: String) {
        group.withLock { $0 }?.requestShutdown(reason: reason)
    }
}

/// Serves the control socket as a component of the group: started last (so `health` answering means
/// the service is ready) and stopped first.
struct ControlSocketService: Service {
    let rpc: RPCServer
    var name: String { "control socket" }
    func start() async throws { try rpc.start() }
    func stop() async { await rpc.stop() }
}

/// The common `main` of the four services: options, directories, logging, the control socket with
/// `health` and `shutdown`, signal handling, and a bounded graceful stop. Never returns.
public enum ServiceMain {
    public static func run(_ name: ServiceName, summary: String,
                           makeServices: @escaping @Sendable (ServiceContext) async throws -> [any Service]) -> Never {
        ignoreSIGPIPE()
        var none = sigset_t()
        sigfillset(&none)
        pthread_sigmask(SIG_UNBLOCK, &none, nil)  // a parent may have left signals blocked

        let options: ServiceOptions
        do {
            options = try ServiceOptions.parse(Array(CommandLine.arguments.dropFirst()), service: name.rawValue)
        } catch {
            printError("\(name): \(error)\n\nusage: \(name) [options]\n\(ServiceOptions.helpText)")
            exit(ExitCode.usage)
        }
        if options.wantsHelp {
            print("\(name) — \(summary)\n\nusage: \(name) [options]\n\n\(ServiceOptions.helpText)\n  --health           ask the running \(name) for its health (exit 0 if ok): for container health checks")
            exit(ExitCode.ok)
        }
        if options.arguments == ["--health"] || CommandLine.arguments.contains("--health") {
            probeHealth(name, paths: options.paths)
        }
        do {
            try options.paths.prepare()
        } catch {
            printError("\(name): cannot prepare the state directory: \(error)")
            exit(ExitCode.config)
        }
        let logger = Logger(service: name.rawValue, level: options.logLevel,
                            file: LogFile(path: options.paths.log(name.rawValue)), toStderr: options.logToStderr)
        let socketPath = options.paths.socket(name)
        if Sockets.isUnixSocketLive(socketPath) {
            logger.error("another \(name) is already running on \(socketPath)")
            exit(ExitCode.config)
        }
        let loop = EventLoop.shared
        let rpc = RPCServer(path: socketPath, loop: loop)
        let context = ServiceContext(name: name, options: options, logger: logger, rpc: rpc, loop: loop)
        rpc.register(ServiceRPC.Health.self) { _ in context.healthInfo() }
        rpc.register(ServiceRPC.Shutdown.self) { _ in
            // Reply first, then stop.
            loop.schedule(at: deadline(after: 0.01)) { context.requestShutdown(reason: "shutdown request") }
            return Empty()
        }

        Task(executorPreference: loop) {
            let services: [any Service]
            do {
                services = try await makeServices(context)
            } catch {
                logger.error("cannot start: \(error)")
                exit(error is ConfigError ? ExitCode.config : ExitCode.failure)
            }
            // Started last, so stopped first: the control socket, and before it every periodic job.
            let group = ServiceGroup(services: services + [ControlSocketService(rpc: rpc), context.periodic], logger: logger)
            context.group.withLock { $0 = group }
            group.handleSignals(loop: loop)
            watchSupervisor(context: context)
            MemoryTrim.start(on: context.periodic)
            logger.info("starting", ("pid", getpid()), ("state_dir", options.paths.stateDir), ("config_dir", options.paths.configDir))
            let code = await group.run()
            if code == ExitCode.ok { logger.info("stopped") }
            exit(code)
        }
        parkMainThread()
    }
}

/// `<service> --health`: asks the running service over its socket; prints its health, exit 0 when ok.
func probeHealth(_ name: ServiceName, paths: RuntimePaths) -> Never {
    let client = RPCClient(path: paths.socket(name), defaultTimeout: 3)
    Task(executorPreference: EventLoop.shared) {
        client.start()
        do {
            let info = try await client.call(ServiceRPC.Health.self, Empty(), timeout: 3)
            print("\(info.service) pid \(info.pid): \(info.status.rawValue)\(info.detail.map { " (\($0))" } ?? "")")
            exit(info.status == .ok ? ExitCode.ok : ExitCode.failure)
        } catch {
            printError("\(name) is not answering on \(paths.socket(name)): \(error)")
            exit(ExitCode.failure)
        }
    }
    parkMainThread()
}

/// A supervised service (the launcher sets `LLAMA_RUNNER_SUPERVISOR_PID`) stops by itself when its
/// launcher is gone, even after `kill -9` of the launcher, so no orphaned service keeps ports or runners.
func watchSupervisor(context: ServiceContext) {
    guard let text = ProcessEnvironment.get("LLAMA_RUNNER_SUPERVISOR_PID"), let supervisor = Int32(text) else { return }
    context.periodic.every(1) {
        if getppid() != supervisor {
            context.logger.warning("launcher (pid \(supervisor)) is gone; stopping")
            context.requestShutdown(reason: "launcher exited")
        }
    }
}

/// Writes a line to stderr.
public func printError(_ message: String) {
    let line = message.hasSuffix("\n") ? message : message + "\n"
    var bytes = Array(line.utf8)
    _ = bytes.withUnsafeMutableBytes { write(2, $0.baseAddress, $0.count) }
}
