import Shared

/// The gateway's public ports, bound from `app_config.json` (fetched from the registry), each with
/// its own router. A port that is taken stops the gateway with a message naming the port and the
/// config key (exit 78, which the launcher does not retry). A port whose listening socket was handed
/// down (by the launcher, or a systemd `.socket` unit: `InheritedSockets`) is served on that socket,
/// so connections that arrived while no gateway ran are waiting in its backlog.
final class GatewayService: Service {
    struct Port {
        let key: String
        let host: String
        let port: UInt16
        let handler: any HTTPHandler
    }

    let context: ServiceContext
    let servers: [HTTPServer]
    let clients: [RPCClient]

    private init(context: ServiceContext, servers: [HTTPServer], clients: [RPCClient]) {
        self.context = context
        self.servers = servers
        self.clients = clients
    }

    var name: String { "public ports" }

    static func make(context: ServiceContext) async throws -> GatewayService {
        let paths = context.paths
        let registry = RPCClient(path: paths.socket(.registry), loop: context.loop)
        let runners = RPCClient(path: paths.socket(.runners), loop: context.loop)
        let metrics = RPCClient(path: paths.socket(.metrics), loop: context.loop)
        let clients = [registry, runners, metrics]
        clients.forEach { $0.start() }
        let config = try await registry.call(RegistryRPC.AppConfigGet.self, Empty(), timeout: 30)

        let health = ServiceHealth(context: context, clients: [(.registry, registry), (.runners, runners), (.metrics, metrics)])
        let hub = EventHub()
        let catalog = ModelCatalog(registry: registry, loop: context.loop) { revision in
            hub.publish("registry", .object(JSONObject([("revision", .string(revision))])))
        }
        await catalog.start()
        let pulls = PullTracker(registry: registry, catalog: catalog) { status in
            if let value = try? JSONCoder.encodeValue(status) { hub.publish("pull", value) }
        }
        // The runner-managers models are placed on: this machine's, and those of `hosts` (which follow the config).
        let hosts = RunnerHosts(local: runners, loop: context.loop)
        // Each request's record also goes to the dashboard's live Activity, as `request` events.
        let relay = RunnerRelay(runners: runners, metrics: metrics, catalog: catalog, hosts: hosts) { record in
            guard hub.count > 0, let value = try? JSONCoder.encodeValue(TimedRecord(at: Double(unixMillis()) / 1000, record: record)) else { return }
            hub.publish("request", value)
        }
        let inflight = InFlightTable(capture: config.dashboard.capture ? CaptureRing() : nil)
        let instances = LMStudioInstances()
        @Sendable func listen(to host: RunnerHosts.Host) {
            host.client.onNotification { method, data in
                guard method == RunnersRPC.StateChanged.name, let state = RPCClient.decode(RunnersRPC.StateChanged.self, from: data) else { return }
                relay.runnerStateChanged(state)
                instances.runnerStateChanged(model: state.model, state: state.state)
                if let value = try? JSONCoder.encodeValue(state) {
                    hub.publish("runner", value)
                }
            }
            host.client.subscribe()
        }
        listen(to: hosts.local)
        hosts.onJoin { listen(to: $0) }
        // A host that went down (or was removed) ends the requests its runners were answering; its models come and go.
        hosts.onChange { host, change in
            switch change {
            case .down, .removed:
                let ended = inflight.cancel(host: host.name, reason: host.lastError ?? "no heartbeat")
                context.logger.warning(change == .down ? "host is down" : "host was removed", ("host", host.name), ("ended", ended))
            case .up:
                context.logger.info("host is up", ("host", host.name))
            }
            catalog.setHostModels(hosts.remoteModels)
            hub.publish("host", .object(JSONObject([("name", .string(host.name)), ("state", .string(change.rawValue))])))
        }
        await hosts.configure(config.hosts, configDir: paths.configDir)
        // An edit of `hosts` applies at once: the catalog reads the app config on every registry change.
        catalog.onAppConfig { app in Task(executorPreference: context.loop) { await hosts.configure(app.hosts, configDir: paths.configDir) } }
        hosts.start(on: context.periodic)
        context.rpc.register(GatewayRPC.Hosts.self) { _ in hosts.statuses }
        // Runners that were ready before this gateway (adopted, or a reconnect) send no notification
        // until their next transition: their state is read once, on every connection.
        runners.onConnect { Task(executorPreference: context.loop) { await relay.seedReadyRunners() } }
        await relay.seedReadyRunners()
        // The peers' model lists, read when due (each peer has its own interval).
        Task(executorPreference: context.loop) { await catalog.peers.readDue() }
        context.periodic.every(1) { await catalog.peers.readDue() }
        // Metric ticks for the dashboard, only while someone listens.
        context.periodic.every(2) {
            if hub.count > 0, let summary = try? await metrics.call(MetricsRPC.Summary.self, Empty(), timeout: 2),
               let value = try? JSONCoder.encodeValue(summary) {
                hub.publish("metrics", value)
            }
        }
        LogTail(paths: context.paths, hub: hub).start(on: context.periodic)
        var openAI = OpenAIRoutes(catalog: catalog, relay: relay, bodies: JSONBodyReader(limit: config.limits.requestBodyBytes))
        openAI.spoolDirectory = context.paths.runDir
        func baseRouter() -> Router {
            var router = Router()
            router.get("/health") { _, _ in await health.response() }
            return router
        }
        var ports: [Port] = []
        // The dashboard's own page may call every port (its playground talks to the API surfaces).
        let dashboardPort: UInt16? = config.dashboard.enabled ? config.dashboard.webPort : nil
        // An API port: its router behind the in-flight table (the dashboard's cancel) and the network boundary.
        func guarded(_ router: Router, _ proxy: AppConfig.Proxy, surface: String, openPaths: Set<String> = [],
                     shape: @escaping @Sendable (Substring) -> ErrorShape) -> any HTTPHandler {
            SurfaceGuard(next: InFlightHandler(next: router, table: inflight, port: surface), keys: proxy.apiKeys,
                         origins: OriginPolicy(patterns: proxy.corsOrigins ?? OriginPolicy.localOrigins, dashboardWebPort: dashboardPort),
                         hosts: HostPolicy(boundHost: proxy.host, allowedHosts: config.allowedHosts, port: proxy.port),
                         openPaths: openPaths, shape: shape)
        }
        if config.ollama.enabled {
            var router = baseRouter()
            OllamaRoutes.register(on: &router)
            var ollamaOpenAI = openAI
            ollamaOpenAI.loadProgress = config.ollama.streamLoadingProgress
            ollamaOpenAI.register(on: &router)
            let modelsFolder = config.primaryModelsFolder(configDir: context.paths.configDir) ?? "models/"
            OllamaPull(pulls: pulls, bodies: openAI.bodies).register(on: &router)
            OllamaModels(catalog: catalog, registry: registry, bodies: openAI.bodies,
                         blobFolder: config.blobFolder(configDir: context.paths.configDir), loop: context.loop).register(on: &router)
            OllamaAPI(catalog: catalog, relay: relay, bodies: openAI.bodies, openAI: ollamaOpenAI, modelsFolder: modelsFolder,
                      loadProgress: config.ollama.streamLoadingProgress).register(on: &router)
            router.fallback = { r in
                r.path.hasPrefix("/v1") ? ErrorShape.openAI.response(.notFound, "unknown endpoint \(r.method) \(r.path)")
                                        : HTTPResponse.text("404 page not found", status: .notFound)
            }
            ports.append(Port(key: "proxies.ollama.port", host: config.ollama.host, port: config.ollama.port,
                              handler: guarded(router, config.ollama, surface: "ollama") { $0.hasPrefix("/v1") ? .openAI : .ollama }))
        }
        if config.lmstudio.enabled {
            var router = baseRouter()
            var lmOpenAI = openAI
            lmOpenAI.ownedBy = "organization_owner"
            lmOpenAI.loadProgress = config.lmstudio.streamLoadingProgress
            lmOpenAI.register(on: &router)
            LMStudioAPI(catalog: catalog, relay: relay, bodies: openAI.bodies, openAI: lmOpenAI).register(on: &router)
            // LM Studio's own clients: the SDK's websocket protocol and REST API v1, over one backend.
            let backend = LMStudioBackend(catalog: catalog, relay: relay, instances: instances,
                                          defaultTTLSeconds: config.limits.defaultTTLSeconds, loop: context.loop)
            LMStudioSDK(backend: backend, apiKeys: config.lmstudio.apiKeys, websocket: config.http.websocketConfiguration,
                        logger: context.logger).register(on: &router)
            LMStudioRESTv1(backend: backend, bodies: openAI.bodies,
                           chat: StatefulChat(backend: backend, bodies: openAI.bodies, store: ResponseStore()), pulls: pulls).register(on: &router)
            router.fallback = { r in
                r.path.hasPrefix("/api/v1/")
                    ? ErrorShape.lmstudioV1.response(.notFound, "unknown endpoint \(r.method) \(r.path)", type: "invalid_request", code: "unknown_endpoint")
                    : ErrorShape.openAI.response(.notFound, "unknown endpoint \(r.method) \(r.path)")
            }
            ports.append(Port(key: "proxies.lmstudio.port", host: config.lmstudio.host, port: config.lmstudio.port,
                              handler: guarded(router, config.lmstudio, surface: "lmstudio", openPaths: LMStudioSDK.openPaths) {
                                  $0.hasPrefix("/api/v1/") ? .lmstudioV1 : .openAI
                              }))
        }
        if config.dashboard.enabled {
            var api = baseRouter()
            DashboardStatus(health: health, catalog: catalog, hosts: relay.hosts, metrics: metrics).register(on: &api)
            DashboardAPI(catalog: catalog, registry: registry, runners: runners, hosts: relay.hosts, metrics: metrics, hub: hub, bodies: openAI.bodies,
                         paths: context.paths, adminToken: config.dashboard.adminToken,
                         loopbackOnly: HostPolicy.isLoopback(config.dashboard.host), loop: context.loop, pulls: pulls,
                         inflight: inflight, startedWith: config).register(on: &api)
            api.fallback = { r in DashboardAPI.error(.notFound, "unknown endpoint \(r.method) \(r.path)") }
            func dashboardHosts(_ port: UInt16) -> HostPolicy {
                HostPolicy(boundHost: config.dashboard.host, allowedHosts: config.allowedHosts, port: port)
            }
            let dashboardOrigins = OriginPolicy(patterns: config.dashboard.corsOrigins ?? OriginPolicy.dashboardOrigins(webPort: config.dashboard.webPort),
                                                dashboardWebPort: config.dashboard.webPort)
            ports.append(Port(key: "dashboard.api_port", host: config.dashboard.host, port: config.dashboard.apiPort,
                              handler: SurfaceGuard(next: api, keys: [], origins: dashboardOrigins, hosts: dashboardHosts(config.dashboard.apiPort),
                                                    adminToken: config.dashboard.adminToken) { _ in .openAI }))
            var web = baseRouter()
            let siteConfig = OllamaAPI.json(.object(JSONObject([
                ("version", .string(LlamaRunnerVersion.current)), ("apiPort", .int(Int(config.dashboard.apiPort))),
                ("ollamaPort", .int(config.ollama.enabled ? Int(config.ollama.port) : 0)),
                ("lmstudioPort", .int(config.lmstudio.enabled ? Int(config.lmstudio.port) : 0)),
                ("capture", .bool(config.dashboard.capture)),
            ])))
            web.get("/dashboard-config.json") { _, _ in siteConfig }
            if let root = StaticFiles.locate(configured: config.dashboard.webRoot, configDir: context.paths.configDir) {
                let files = StaticFiles(root: root)
                web.fallback = { r in await files.serve(r) }
            } else {
                context.logger.warning("the web dashboard's files were not found (set dashboard.web_root); only its API is served")
                web.get("/") { _, _ in .text("Llama Runner: the dashboard files were not found; set dashboard.web_root in app_config.json.\n", status: .notFound) }
            }
            ports.append(Port(key: "dashboard.web_port", host: config.dashboard.host, port: config.dashboard.webPort,
                              handler: SurfaceGuard(next: web, keys: [], origins: dashboardOrigins, hosts: dashboardHosts(config.dashboard.webPort)) { _ in .openAI }))
        }

        var inherited = InheritedSockets.take()
        defer { inherited.closeUnclaimed() }
        let names = Dictionary(config.publicPorts.map { ($0.key, $0.name) }, uniquingKeysWith: { a, _ in a })
        var servers: [HTTPServer] = []
        for port in ports {
            var configuration = config.http.serverConfiguration(maxBodyBytes: config.limits.requestBodyBytes)
            let ollamaPort = port.key == "proxies.ollama.port"
            // Ollama's blob uploads are whole models: their route has no body limit but the disk's.
            if ollamaPort { configuration.bodyLimit = { OllamaModels.isBlobUpload($0) ? OllamaModels.blobBodyLimit : nil } }
            configuration.errorFormatter = { error, path in
                // Faults the server answers before any route (413 by Content-Length, 408, 400) in the
                // API's own shape: Ollama's under /api/ on 11434, OpenAI's elsewhere.
                let shape: ErrorShape = ollamaPort && (path.map { !$0.hasPrefix("/v1") } ?? false) ? .ollama : .openAI
                return ("application/json; charset=utf-8", shape.body(error.status, error.message))
            }
            if let fd = inherited.claim(name: names[port.key] ?? port.key, port: port.port) {
                let listener = Listener(adopting: fd, address: .tcp(host: port.host, port: port.port), loop: context.loop)
                servers.append(HTTPServer(listener: listener, configuration: configuration, handler: port.handler))
                continue
            }
            do {
                servers.append(try HTTPServer(address: .tcp(host: port.host, port: port.port),
                                              configuration: configuration,
                                              handler: port.handler, loop: context.loop))
            } catch {
                let reason: String = if case SocketError.addressInUse = error { "is already in use by another process" } else { "cannot be opened: \(error)" }
                throw ConfigError(file: "app_config.json", message: "\(port.key): \(port.host):\(port.port) \(reason); stop that process or choose another port")
            }
        }
        return GatewayService(context: context, servers: servers, clients: clients)
    }

    func start() async throws {
        for server in servers {
            server.start()
            context.logger.info("listening", ("address", server.address))
        }
    }

    func stop() async {
        await withTaskGroup(of: Void.self) { group in
            for server in servers { group.addTask { await server.stop(grace: 3) } }
        }
        for client in clients { await client.close() }
    }
}
