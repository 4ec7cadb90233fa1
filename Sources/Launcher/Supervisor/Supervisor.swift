import Glibc
import Shared

/// Errors of supervising the services, with the lines of the service's log a user needs to see.
enum LauncherError: Error, CustomStringConvertible {
    case missingExecutable(String)
    case exitedDuringStart(ServiceName, ExitStatus, [String])
    case notHealthy(ServiceName, Double, [String])
    case unknownService(String)
    case stopping

    var description: String {
        switch self {
        case .missingExecutable(let path):
            "\(path) not found: build the executables first (swift build), or run the launcher from the build directory"
        case .exitedDuringStart(let name, let status, let tail):
            "\(name) \(status) while starting" + LauncherError.format(tail)
        case .notHealthy(let name, let seconds, let tail):
            "\(name) did not answer health within \(Int(seconds)) s" + LauncherError.format(tail)
        case .unknownService(let name):
            "unknown service \(name); one of: \(ServiceName.startOrder.map(\.rawValue).joined(separator: ", "))"
        case .stopping:
            "the launcher is stopping"
        }
    }

    static func format(_ tail: [String]) -> String {
        tail.isEmpty ? "" : "\n  last lines of its log:\n" + tail.map { "    " + $0 }.joined(separator: "\n")
    }
}

/// Starts, watches, restarts and stops the four services. An actor: its state is re-checked after
/// every `await`, because a child may exit (or a restart be asked for) while another step waits.
actor Supervisor {
    struct Entry {
        var child: ChildProcess?
        var state = ServiceState.stopped
        var restarts = 0
        var startedAt: UInt64?
        var healthySince: UInt64?
        var policy = RestartPolicy()
        var message: String?
        /// Bumped on every deliberate start or stop, so the exit of a process we meant to stop is
        /// not mistaken for a crash.
        var generation = 0
    }

    let options: ServiceOptions
    let logger: Logger
    let binDir: String
    let loop: EventLoop
    /// Seconds between SIGTERM and SIGKILL when stopping a service.
    let stopGrace: Double
    /// Seconds a service has to answer `health` after spawning.
    let startTimeout: Double
    private var entries: [ServiceName: Entry] = [:]
    private let health: [ServiceName: RPCClient]
    private var stopping = false
    private var startingUp = true
    /// The public ports, held across gateway restarts.
    private var publicSockets: PublicSockets

    init(options: ServiceOptions, logger: Logger, binDir: String, loop: EventLoop, stopGrace: Double = 10, startTimeout: Double = 30,
         inherited: InheritedSockets = InheritedSockets(sockets: [])) {
        publicSockets = PublicSockets(inherited: inherited)
        self.options = options
        self.logger = logger
        self.binDir = binDir
        self.loop = loop
        self.stopGrace = stopGrace
        self.startTimeout = startTimeout
        var clients: [ServiceName: RPCClient] = [:]
        for name in ServiceName.startOrder {
            entries[name] = Entry()
            let client = RPCClient(path: options.paths.socket(name), loop: loop, defaultTimeout: 1, minBackoff: 0.01, maxBackoff: 0.1)
            client.start()
            clients[name] = client
        }
        health = clients
    }

    /// Checks that every executable is there before anything starts.
    nonisolated func checkExecutables() throws {
        for name in ServiceName.startOrder {
            let path = binDir + "/" + name.executable
            if access(path, X_OK) != 0 { throw LauncherError.missingExecutable(path) }
        }
    }

    /// Starts the services in order, each one healthy before the next.
    func startAll() async throws {
        startingUp = true
        defer { startingUp = false }
        for name in ServiceName.startOrder {
            if stopping { throw LauncherError.stopping }
            try await launch(name)
        }
    }

    private func launch(_ name: ServiceName) async throws {
        entries[name]!.generation += 1
        let generation = entries[name]!.generation
        var environment = ProcessEnvironment.all()
        environment["LLAMA_RUNNER_LOG_STDERR"] = "0"
        environment["LLAMA_RUNNER_SUPERVISOR_PID"] = String(getpid())
        var inherited: [Int32] = []
        if name == .gateway, let config = await appConfig() {
            // The gateway gets the public sockets the launcher holds (bound now if new).
            let sockets = publicSockets.sync(config.publicPorts, logger: logger)
            inherited = sockets.map(\.fd)
            if !sockets.isEmpty { environment.merge(InheritedSockets.environment(names: sockets.map(\.name))) { _, new in new } }
            guard entries[name]!.generation == generation else { return }
        }
        let child = try ChildProcess.spawn(binDir + "/" + name.executable, arguments: options.childArguments,
                                           environment: environment, output: .file(options.paths.consoleLog(name.rawValue)),
                                           inheriting: inherited)
        entries[name]!.child = child
        entries[name]!.state = .starting
        entries[name]!.startedAt = monotonicNanos()
        entries[name]!.healthySince = nil
        entries[name]!.message = nil
        logger.info("started \(name)", ("pid", child.pid))
        Task(executorPreference: loop) { [self] in
            let status = await child.wait()
            await exited(name, generation: generation, status: status)
        }
        try await waitHealthy(name, child: child)
        guard entries[name]!.generation == generation else { return }
        entries[name]!.state = .running
        entries[name]!.healthySince = monotonicNanos()
    }

    private func waitHealthy(_ name: ServiceName, child: ChildProcess) async throws {
        let until = deadline(after: startTimeout)
        while monotonicNanos() < until {
            if let status = child.exitStatus { throw LauncherError.exitedDuringStart(name, status, logTail(name)) }
            if let info = try? await health[name]!.call(ServiceRPC.Health.self, Empty(), timeout: 0.5), info.pid == child.pid {
                return
            }
            if let status = child.exitStatus { throw LauncherError.exitedDuringStart(name, status, logTail(name)) }
            try? await loop.sleep(seconds: 0.01)
        }
        throw LauncherError.notHealthy(name, startTimeout, logTail(name))
    }

    private func exited(_ name: ServiceName, generation: Int, status: ExitStatus) async {
        guard !stopping, !startingUp, let entry = entries[name], entry.generation == generation else { return }
        entries[name]!.child = nil
        let now = Double(monotonicNanos()) / 1e9
        let healthySince = entry.healthySince.map { Double($0) / 1e9 }
        let code: Int32? = if case .exited(let c) = status { c } else { nil }
        let decision = entries[name]!.policy.crashed(at: now, healthySince: healthySince, exitCode: code)
        switch decision {
        case .giveUp(let reason):
            entries[name]!.state = .failed
            entries[name]!.message = "\(status); not restarting: \(reason)"
            logger.error("\(name) \(status); not restarting: \(reason)" + LauncherError.format(logTail(name)))
        case .restart(let delay):
            entries[name]!.state = .restarting
            entries[name]!.restarts += 1
            entries[name]!.message = "\(status)"
            logger.warning("\(name) \(status); restarting in \(Int(delay * 1000)) ms")
            Task(executorPreference: loop) { [self] in
                try? await loop.sleep(seconds: delay)
                await relaunch(name, generation: generation)
            }
        }
    }

    private func relaunch(_ name: ServiceName, generation: Int) async {
        guard !stopping, entries[name]!.generation == generation else { return }
        do {
            try await launch(name)
        } catch {
            // A child that died while starting is handled by its own exit (and the policy); one that
            // is alive but never became healthy is stopped, which counts as a crash.
            logger.error("restart of \(name) failed: \(error)")
            if let child = entries[name]!.child, child.isRunning { child.signal(SIGKILL) }
        }
    }

    /// Restarts one service on request; the others keep serving. Revives a failed service too.
    func restart(_ name: ServiceName) async throws -> ServiceStatus {
        if stopping { throw LauncherError.stopping }
        entries[name]!.generation += 1
        entries[name]!.state = .restarting
        entries[name]!.policy.reset()
        if let child = entries[name]!.child {
            logger.info("restarting \(name) on request", ("pid", child.pid))
            if name == .runners {
                // Keep the model servers: the new runner-manager adopts them instead of reloading.
                _ = try? await health[.runners]!.call(RunnersRPC.Detach.self, Empty(), timeout: 2)
            }
            await child.terminate(grace: stopGrace, loop: loop)
        }
        entries[name]!.child = nil
        entries[name]!.restarts += 1
        if stopping { throw LauncherError.stopping }
        try await launch(name)
        return status(of: name)
    }

    /// Stops every service, gateway first: SIGTERM, SIGKILL after `stopGrace`, reaped; sockets removed.
    func stopAll() async {
        stopping = true
        for name in ServiceName.startOrder.reversed() {
            entries[name]!.generation += 1
            guard let child = entries[name]!.child else { continue }
            entries[name]!.state = .stopping
            let wasRunning = child.isRunning
            let status = await child.terminate(grace: stopGrace, loop: loop)
            if wasRunning && status != .exited(0) { logger.warning("\(name) \(status) while stopping") }
            entries[name]!.child = nil
            entries[name]!.state = .stopped
            unlink(options.paths.socket(name))
            if name == .gateway { publicSockets.closeAll() }
        }
        for client in health.values { await client.close() }
        await stopStrayRunners()
    }

    /// A runner-manager that died (or was killed) leaves its runners running for adoption; when
    /// everything stops, none may stay. Each recorded runner that is still the same process (pid and
    /// start time) is stopped.
    private func stopStrayRunners() async {
        let strays = RunnerRecord.load(options.paths).filter { $0.process.isAlive }
        for record in strays {
            logger.warning("stopping a runner left behind", ("model", record.model), ("pid", record.process.pid))
            await record.process.terminate(grace: stopGrace, loop: loop)
        }
        if !strays.isEmpty || access(RunnerRecord.path(options.paths), F_OK) == 0 {
            try? RunnerRecord.save([], options.paths)
        }
    }

    func status(of name: ServiceName) -> ServiceStatus {
        let e = entries[name]!
        let uptime = e.child != nil ? e.startedAt.map { Double(monotonicNanos() - $0) / 1e9 } : nil
        return ServiceStatus(name: name.rawValue, pid: e.child?.pid, state: e.state, restarts: e.restarts, uptimeSeconds: uptime, message: e.message)
    }

    func statusAll() -> [ServiceStatus] { ServiceName.startOrder.map { status(of: $0) } }

    /// The app config, asked of the registry (for the banner's URLs).
    func appConfig() async -> AppConfig? {
        try? await health[.registry]!.call(RegistryRPC.AppConfigGet.self, Empty(), timeout: 2)
    }

    nonisolated func logTail(_ name: ServiceName) -> [String] {
        LogFile.tail(options.paths.log(name.rawValue), lines: 8) + LogFile.tail(options.paths.consoleLog(name.rawValue), lines: 8)
    }
}
