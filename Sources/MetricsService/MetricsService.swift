import Glibc
import Shared

/// metrics-service: receives `metrics.record` from the gateway, samples the runners every 2 s (RSS
/// from runner-manager's list), and answers `metrics.summary`, `metrics.requests` and
/// `metrics.prometheus`. Being down never affects a request: the gateway's records are notifications.
final class MetricsService: Service {
    let context: ServiceContext
    let store = MetricsStore()
    let runners: RPCClient

    init(context: ServiceContext) {
        self.context = context
        runners = RPCClient(path: context.paths.socket(.runners), loop: context.loop, defaultTimeout: 2)
    }

    var name: String { "metrics" }

    func start() async throws {
        let store = self.store
        let rpc = context.rpc
        rpc.registerNotification(MetricsRPC.Record.self) { await store.record($0) }
        rpc.register(MetricsRPC.Summary.self) { _ in await store.summary() }
        rpc.register(MetricsRPC.Requests.self) { await store.latest($0.limit ?? 100) }
        rpc.register(MetricsRPC.SeriesQuery.self) { try await store.series($0) }
        rpc.register(MetricsRPC.Prometheus.self) { _ in
            let rss = Double(ProcessIdentity.residentBytes(getpid()) ?? 0)
            return await store.prometheus(processGauges: [("llama_runner_metrics_service_resident_memory_bytes", "Resident memory of metrics-service.", rss)])
        }
        runners.start()
        let loop = context.loop
        let runners = self.runners
        @Sendable func sample() {
            Task(executorPreference: loop) {
                if let list = try? await runners.call(RunnersRPC.List.self, Empty(), timeout: 1) {
                    var rss: [MetricsStore.Key: Double] = [:]
                    var leases: [MetricsStore.Key: Double] = [:]
                    for r in list where r.state == "ready" {
                        let k = MetricsStore.key([("model", r.model)])
                        rss[k] = Double(r.rssBytes ?? 0)
                        leases[k] = Double(r.activeLeases)
                    }
                    await store.setGauge("llama_runner_runner_resident_memory_bytes", help: "Resident memory of each ready runner.", values: rss)
                    await store.setGauge("llama_runner_runner_active_requests", help: "Requests a runner is serving now.", values: leases)
                }
                await store.sample()
                loop.schedule(at: deadline(after: 2)) { sample() }
            }
        }
        loop.schedule(at: deadline(after: 2)) { sample() }
    }

    func stop() async { await runners.close() }
}
