import Shared

/// runner-manager as a service: follows the registry's model table (refetched on `registry.changed`
/// and on reconnect), adopts the runners a previous instance recorded, serves `runners.*`, and ticks
/// every second for idle unloads. On stop it stops every runner, unless `runners.detach` asked it to
/// leave them for the next instance.
final class RunnerService: Service {
    let context: ServiceContext
    let registry: RPCClient
    let manager: RunnerManager

    init(context: ServiceContext) {
        self.context = context
        registry = RPCClient(path: context.paths.socket(.registry), loop: context.loop, defaultTimeout: 10)
        manager = RunnerManager(context: context, registry: registry)
    }

    var name: String { "runners" }

    func start() async throws {
        let manager = self.manager
        let loop = context.loop
        registry.onNotification { method, _ in
            if method == RegistryRPC.Changed.name { Task(executorPreference: loop) { await manager.refresh() } }
        }
        registry.onConnect { Task(executorPreference: loop) { await manager.refresh() } }
        registry.subscribe()
        registry.start()
        // Where runners listen comes first: the first refresh may start preloaded models.
        let app = try? await registry.call(RegistryRPC.AppConfigGet.self, Empty(), timeout: 30)
        let runnerHost = app?.runnerHost?.overridden(by: ProcessEnvironment.all())
        await manager.configureNetwork(runnerHost)
        // `refresh` samples the devices first: the scheduler's budgets and placements come from them.
        await manager.refresh()
        let inventory = manager.inventory
        await manager.adopt()

        let rpc = context.rpc
        rpc.register(RunnersRPC.Acquire.self) { request, caller in try await manager.acquire(request, owner: caller) }
        rpc.onDisconnect { caller in Task(executorPreference: loop) { await manager.disconnected(caller) } }
        rpc.register(RunnersRPC.Release.self) { request, caller in await manager.release(request, caller: caller); return Empty() }
        rpc.register(RunnersRPC.List.self) { _ in await manager.list() }
        rpc.register(RunnersRPC.Load.self) { try await manager.load($0) }
        rpc.register(RunnersRPC.Unload.self) { try await manager.unload($0.model); return Empty() }
        rpc.register(RunnersRPC.UnloadAll.self) { _ in await manager.unloadAll(); return Empty() }
        rpc.register(RunnersRPC.Logs.self) { try await manager.logs($0) }
        rpc.register(RunnersRPC.Detach.self) { _ in await manager.detach(); return Empty() }
        rpc.register(RunnersRPC.Hardware.self) { _ in inventory.current }
        rpc.register(RunnersRPC.Host.self) { _ in await manager.hostInfo() }
        rpc.register(RunnersRPC.Models.self) { _ in await manager.snapshot }
        if let runnerHost { try serveRemoteGateways(runnerHost) }

        context.periodic.every(1) { await manager.tick() }
        context.periodic.every(interval: { await manager.appConfig.hardware.sampleIntervalSeconds }) {
            await inventory.sample()
            await manager.hardwareSampled()
        }
    }

    /// The control plane on TCP for other machines' gateways (`runner_host`), behind the shared
    /// secret; a secret that cannot be read stops runner-manager with the reason (exit 78).
    func serveRemoteGateways(_ config: AppConfig.RunnerHost) throws {
        let path = resolvePath(config.secretFile, configDir: context.paths.configDir)
        let secret = try RPCSecret.load(file: path)
        let logger = context.logger
        context.rpc.onAuthenticationFailure { error in logger.warning("refused a control connection: \(error)") }
        let port = try context.rpc.startTCP(.tcp(host: config.host, port: config.port), secret: secret)
        logger.info("serving remote gateways", ("address", "\(config.host):\(port)"), ("runners", config.reachableHost))
    }

    func stop() async {
        await manager.shutdown()
        await manager.flushRecords()
        await registry.close()
    }
}
