import Glibc
import Shared

/// `launcher up`: starts the four services in order, prints the URLs, keeps them running, and on
/// SIGINT/SIGTERM or `launcher down` stops them gateway first. Serves `launcher.sock` for the other
/// commands.
enum UpCommand {
    /// The supervisor as one component of the launcher's service group: it starts all services (and
    /// prints the banner once they are healthy) and stops them all.
    struct SupervisorService: Service {
        let supervisor: Supervisor
        let options: ServiceOptions
        var name: String { "services" }

        func start() async throws {
            do {
                try await supervisor.startAll()
            } catch {
                await supervisor.stopAll()
                throw error
            }
            let config = await supervisor.appConfig() ?? AppConfig()
            print(banner(config))
            fflush(nil)
        }

        func stop() async { await supervisor.stopAll() }

        func banner(_ c: AppConfig) -> String {
            func url(_ host: String, _ port: UInt16) -> String { "http://\(host.contains(":") ? "[\(host)]" : host):\(port)" }
            var lines = ["Llama Runner \(LlamaRunnerVersion.current) is up"]
            if c.ollama.enabled { lines.append("  Ollama API      \(url(c.ollama.host, c.ollama.port))") }
            if c.lmstudio.enabled { lines.append("  LM Studio API   \(url(c.lmstudio.host, c.lmstudio.port))") }
            if c.dashboard.enabled {
                lines.append("  Dashboard API   \(url(c.dashboard.host, c.dashboard.apiPort))")
                lines.append("  Dashboard       \(url(c.dashboard.host, c.dashboard.webPort))")
            }
            lines.append("  state \(options.paths.stateDir)   config \(options.paths.configDir)")
            lines.append("Press Ctrl+C to stop, or run `launcher down` from another terminal.")
            return lines.joined(separator: "\n")
        }
    }

    static func run(_ options: ServiceOptions) -> Never {
        do {
            try options.paths.prepare()
        } catch {
            printError("launcher: cannot prepare the state directory: \(error)")
            exit(ExitCode.config)
        }
        let logger = Logger(service: "launcher", level: options.logLevel,
                            file: LogFile(path: options.paths.log("launcher")), toStderr: true)
        let socket = options.paths.launcherSocket
        if Sockets.isUnixSocketLive(socket) {
            printError("launcher: Llama Runner is already running with state directory \(options.paths.stateDir) (see `launcher status`)")
            exit(ExitCode.failure)
        }
        // The fatal subset of `launcher check`: taken ports and unusable directories stop us here.
        // Sockets systemd bound for us (deploy/systemd/llama-runner.socket) count as ours, not as taken.
        let inherited = InheritedSockets.take()
        var preflight = CheckCommand.Result()
        CheckCommand.fatal(options, handedDown: Set(inherited.sockets.map(\.port)), into: &preflight)
        let faults = preflight.lines.filter { $0.level == "fail" }
        if !faults.isEmpty {
            for fault in faults { logger.error("cannot start: \(fault.text)") }
            exit(ExitCode.failure)
        }
        let loop = EventLoop.shared
        let supervisor = Supervisor(options: options, logger: logger, binDir: executableDirectory(), loop: loop, inherited: inherited)
        do {
            try supervisor.checkExecutables()
        } catch {
            printError("launcher: \(error)")
            exit(ExitCode.unavailable)
        }
        let rpc = RPCServer(path: socket, loop: loop)
        let group = ServiceGroup(services: [SupervisorService(supervisor: supervisor, options: options)],
                                 logger: logger, grace: 60)
        let started = monotonicNanos()
        rpc.register(LauncherRPC.Status.self) { _ in
            LauncherRPC.StatusReport(launcherPid: getpid(), uptimeSeconds: Double(monotonicNanos() - started) / 1e9,
                                     services: await supervisor.statusAll())
        }
        rpc.register(LauncherRPC.Restart.self) { ref in
            guard let name = ServiceName(argument: ref.service) else {
                throw RPCFault.invalidParams(LauncherError.unknownService(ref.service).description)
            }
            do {
                // Carried through whether or not the caller stays: a caller that goes away (the gateway asking
                // for its own restart dies during it) cancels its handler, and a cancelled restart would start
                // the service without what it needs (the gateway without its listening sockets).
                return try await Task(executorPreference: loop) { try await supervisor.restart(name) }.value
            } catch {
                throw RPCFault(code: RPCFault.unavailableCode, message: String(describing: error))
            }
        }
        rpc.register(LauncherRPC.Down.self) { _ in
            loop.schedule(at: deadline(after: 0.01)) { group.requestShutdown(reason: "launcher down") }
            return Empty()
        }
        Task(executorPreference: loop) {
            do {
                try rpc.start()
            } catch {
                logger.error("cannot open \(socket): \(error)")
                exit(ExitCode.failure)
            }
            group.handleSignals(loop: loop)
            logger.info("starting Llama Runner", ("pid", getpid()), ("state_dir", options.paths.stateDir), ("config_dir", options.paths.configDir))
            let code = await group.run()
            await rpc.stop()
            unlink(socket)
            if code == ExitCode.ok { logger.info("all services stopped") }
            exit(code == ExitCode.ok ? ExitCode.ok : ExitCode.failure)
        }
        parkMainThread()
    }
}
