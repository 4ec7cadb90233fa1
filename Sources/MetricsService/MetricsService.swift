import Glibc
import Shared
import Synchronization

/// metrics-service: receives `metrics.record` from the gateway, samples the runners every 2 s (RSS
/// from runner-manager's list), and answers `metrics.summary`, `metrics.requests` and
/// `metrics.prometheus`. Being down never affects a request: the gateway's records are notifications.
final class MetricsService: Service {
    let context: ServiceContext
    let store = MetricsStore()
    let runners: RPCClient
    /// Every service's control socket (for its pid), and the launcher's.
    let services: [(String, RPCClient)]
    let launcher: RPCClient

    init(context: ServiceContext) {
        self.context = context
        runners = RPCClient(path: context.paths.socket(.runners), loop: context.loop, defaultTimeout: 2)
        services = ServiceName.startOrder.map { ($0.rawValue, RPCClient(path: context.paths.socket($0), loop: context.loop, defaultTimeout: 1)) }
        launcher = RPCClient(path: context.paths.launcherSocket, loop: context.loop, defaultTimeout: 1)
    }

    var name: String { "metrics" }

    func start() async throws {
        let store = self.store
        let rpc = context.rpc
        rpc.registerNotification(MetricsRPC.Record.self) { await store.record($0) }
        rpc.register(MetricsRPC.Summary.self) { _ in await store.summary() }
        rpc.register(MetricsRPC.Requests.self) { await store.latest($0.limit ?? 100) }
        rpc.register(MetricsRPC.SeriesQuery.self) { try await store.series($0) }
        rpc.register(MetricsRPC.Prometheus.self) { _ in await store.prometheus(processGauges: []) }
        runners.start()
        services.forEach { $0.1.start() }
        launcher.start()
        let runners = self.runners
        let services = self.services
        let launcher = self.launcher
        let sampler = SamplerBox()
        // Other machines' runner-managers the gateway uses (`hosts`): their state, free memory and runners.
        // The list follows the config (read again every `HostEndpoints.rediscoverSeconds`, which also
        // looks `discover` names up again), as the gateway's does.
        let hosts = HostClients(loop: context.loop)
        let registry = services.first { $0.0 == ServiceName.registry.rawValue }?.1
        let configDir = context.paths.configDir
        await hosts.refresh(registry, configDir: configDir)
        context.periodic.every(HostEndpoints.rediscoverSeconds) { await hosts.refresh(registry, configDir: configDir) }
        context.periodic.every(2) {
            let current = hosts.current
            if !current.isEmpty || hosts.hadAny { await Self.sampleHosts(current, into: store) }
        }
        context.periodic.every(2) {
                let now = MetricsStore.unixNow()
                // Runners: RSS and CPU% from /proc, active requests from runner-manager.
                if let list = try? await runners.call(RunnersRPC.List.self, Empty(), timeout: 1) {
                    var rss: [MetricsStore.Key: Double] = [:]
                    var cpu: [MetricsStore.Key: Double] = [:]
                    var leases: [MetricsStore.Key: Double] = [:]
                    var slots: [MetricsStore.Key: Double] = [:]
                    for r in list {
                        guard let c = r.slotCache else { continue }
                        for (operation, outcome, n) in [("save", "ok", c.saves), ("save", "failed", c.saveFailures),
                                                        ("restore", "ok", c.restores), ("restore", "failed", c.restoreFailures)] {
                            slots[MetricsStore.key([("model", r.model), ("operation", operation), ("outcome", outcome)])] = Double(n)
                        }
                    }
                    await store.setGauge("llama_runner_slot_cache_operations_total", help: "Slots saved at unload and restored at load (conversations kept across swaps), by model, operation and outcome; failures are logged by runner-manager.",
                                         values: slots, counter: true)
                    for r in list where r.state == .ready {
                        guard let pid = r.pid else { continue }
                        let k = MetricsStore.key([("model", r.model)])
                        let s = sampler.sample(pid, now: now)
                        rss[k] = Double(s.rss ?? 0)
                        if let c = s.cpu { cpu[k] = c }
                        leases[k] = Double(r.activeLeases)
                    }
                    await store.setGauge("llama_runner_runner_resident_memory_bytes", help: "Resident memory of each ready runner.", values: rss)
                    await store.setGauge("llama_runner_runner_cpu_percent", help: "CPU use of each ready runner over the last 2 s (100 = one core).", values: cpu)
                    await store.setGauge("llama_runner_runner_active_requests", help: "Requests a runner is serving now.", values: leases)
                }
                // Devices: GPU memory, utilisation, temperature and power as runner-manager last sampled them.
                if let hardware = try? await runners.call(RunnersRPC.Hardware.self, Empty(), timeout: 1) {
                    var memory: [MetricsStore.Key: Double] = [:]
                    var util: [MetricsStore.Key: Double] = [:]
                    var temperature: [MetricsStore.Key: Double] = [:]
                    var power: [MetricsStore.Key: Double] = [:]
                    for d in hardware.gpus {
                        let labels = [("device", d.id), ("name", d.name)]
                        for (kind, bytes) in [("total", d.totalBytes), ("used", d.usedBytes), ("free", d.freeBytes)] {
                            memory[MetricsStore.key(labels + [("kind", kind)])] = Double(bytes)
                        }
                        let k = MetricsStore.key(labels)
                        if let u = d.utilizationPercent { util[k] = u }
                        if let t = d.temperatureCelsius { temperature[k] = t }
                        if let w = d.powerWatts { power[k] = w }
                    }
                    await store.setGauge("llama_runner_gpu_memory_bytes", help: "GPU memory by device (UUID or PCI address) and kind (total, used, free).", values: memory)
                    await store.setGauge("llama_runner_gpu_utilization_percent", help: "GPU busy time over the driver's last sample period, by device.", values: util)
                    await store.setGauge("llama_runner_gpu_temperature_celsius", help: "GPU temperature, by device.", values: temperature)
                    await store.setGauge("llama_runner_gpu_power_watts", help: "GPU power draw, by device.", values: power)
                }
                // The services themselves, and the launcher.
                var pids: [(String, Int32)] = []
                for (name, client) in services {
                    if let info = try? await client.call(ServiceRPC.Health.self, Empty(), timeout: 0.5) { pids.append((name, info.pid)) }
                }
                if let report = try? await launcher.call(LauncherRPC.Status.self, Empty(), timeout: 0.5) { pids.append(("launcher", report.launcherPid)) }
                var rss: [MetricsStore.Key: Double] = [:]
                var cpu: [MetricsStore.Key: Double] = [:]
                for (name, pid) in pids {
                    let k = MetricsStore.key([("service", name)])
                    let s = sampler.sample(pid, now: now)
                    rss[k] = Double(s.rss ?? 0)
                    if let c = s.cpu { cpu[k] = c }
                }
                await store.setGauge("llama_runner_service_resident_memory_bytes", help: "Resident memory of each Llama Runner process.", values: rss)
                await store.setGauge("llama_runner_service_cpu_percent", help: "CPU use of each Llama Runner process over the last 2 s.", values: cpu)
                await store.sample()
        }
    }

    /// `runners.host` of each remote host, as gauges labelled by host.
    static func sampleHosts(_ hosts: [(String, RPCClient)], into store: MetricsStore) async {
        var up: [MetricsStore.Key: Double] = [:]
        var free: [MetricsStore.Key: Double] = [:]
        var active: [MetricsStore.Key: Double] = [:]
        var memory: [MetricsStore.Key: Double] = [:]
        for (name, client) in hosts {
            let info = try? await client.call(RunnersRPC.Host.self, Empty(), timeout: 1)
            up[MetricsStore.key([("host", name)])] = info == nil ? 0 : 1
            guard let info else { continue }
            free[MetricsStore.key([("host", name)])] = Double(info.freeBytes)
            for r in info.runners where r.state == .ready {
                active[MetricsStore.key([("host", name), ("model", r.model)])] = Double(r.activeLeases)
            }
            for d in info.hardware.gpus {
                for (kind, bytes) in [("total", d.totalBytes), ("used", d.usedBytes), ("free", d.freeBytes)] {
                    memory[MetricsStore.key([("host", name), ("device", d.id), ("kind", kind)])] = Double(bytes)
                }
            }
        }
        await store.setGauge("llama_runner_host_up", help: "Whether each remote runner host (app_config.json hosts) answered its last sample.", values: up)
        await store.setGauge("llama_runner_host_free_bytes", help: "Free memory on each remote host's freest GPU (or RAM without one).", values: free)
        await store.setGauge("llama_runner_host_active_requests", help: "Requests each ready runner on a remote host is serving, by host and model.", values: active)
        await store.setGauge("llama_runner_host_gpu_memory_bytes", help: "GPU memory of remote hosts, by host, device and kind (total, used, free).", values: memory)
    }

    func stop() async {
        await runners.close()
        for (_, client) in services { await client.close() }
        await launcher.close()
    }
}

/// A client per usable `hosts` endpoint of the app config (`HostEndpoints`); an endpoint that cannot
/// be used is left out (the gateway shows why). Same host, same client, across refreshes.
final class HostClients: Sendable {
    private let loop: EventLoop
    private let clients = Mutex<(byKey: [String: (name: String, client: RPCClient)], hadAny: Bool)>(([:], false))

    init(loop: EventLoop) { self.loop = loop }

    /// The hosts to sample, by name.
    var current: [(String, RPCClient)] { clients.withLock { $0.byKey.values.sorted { $0.name < $1.name }.map { ($0.name, $0.client) } } }
    /// Whether a host was ever configured (its gauges are then kept up to date, emptied once none is left).
    var hadAny: Bool { clients.withLock { $0.hadAny } }

    func refresh(_ registry: RPCClient?, configDir: String) async {
        guard let app = try? await registry?.call(RegistryRPC.AppConfigGet.self, Empty(), timeout: 10) else { return }
        let usable = await HostEndpoints.resolve(app.hosts, configDir: configDir).filter { $0.problem == nil }
        let gone = clients.withLock { c -> [RPCClient] in
            let wanted = Set(usable.map(\.key))
            let gone = c.byKey.filter { !wanted.contains($0.key) }.map(\.value.client)
            c.byKey = c.byKey.filter { wanted.contains($0.key) }
            for e in usable where c.byKey[e.key] == nil {
                guard let address = e.address, case .success(let secret) = e.secret else { continue }
                let client = RPCClient(address: address, secret: secret, loop: loop, defaultTimeout: 2, maxBackoff: 2)
                client.start()
                c.byKey[e.key] = (e.name, client)
            }
            if !c.byKey.isEmpty { c.hadAny = true }
            return gone
        }
        for client in gone { await client.close() }
    }
}

/// The sampler's state, used only from the sampling task (one at a time, every 2 s).
final class SamplerBox: @unchecked Sendable {
    // @unchecked Sendable: mutated only by the 2-second sampling chain, which never overlaps itself.
    private var sampler = ProcessSampler()
    func sample(_ pid: Int32, now: Double) -> (cpu: Double?, rss: Int?) { sampler.sample(pid, now: now) }
}
