import Shared

/// The dashboard API's minimum (8585): `/api/health` and `/api/status` — services, runners, and models
/// with their state. The rest of the dashboard API is `DashboardAPI`.
struct DashboardStatus: Sendable {
    let health: ServiceHealth
    let catalog: ModelCatalog
    let hosts: RunnerHosts
    let metrics: RPCClient

    func register(on router: inout Router) {
        router.get("/api/health") { _, _ in await health.response() }
        router.get("/api/status") { _, _ in await status() }
        router.get("/metrics") { _, _ in await prometheus() }
    }

    /// Prometheus text from metrics-service (503 while it is down; requests are never affected).
    func prometheus() async -> HTTPResponse {
        guard let text = try? await metrics.call(MetricsRPC.Prometheus.self, Empty(), timeout: 5) else {
            return .text("metrics-service is unavailable\n", status: .serviceUnavailable)
        }
        return HTTPResponse(status: .ok, headers: ["Content-Type": "text/plain; version=0.0.4; charset=utf-8"], body: .bytes(Array(text.utf8)))
    }

    struct Status: Encodable {
        struct Model: Encodable {
            let id: String
            let aliases: [String]
            let kind: ModelKind
            let file: String
            /// available / missing / unreadable (the file), and loaded / not-loaded (a runner).
            let fileState: ModelFileState
            let state: String
            let quantization: String?
            let contextLength: Int?
            let sizeBytes: Int?
        }
        let revision: String
        let defaultModel: String?
        let health: JSONValue
        let runners: [RunnerInfo]
        let models: [Model]
    }

    func status() async -> HTTPResponse {
        let healthResponse = await health.response()
        var healthDoc = JSONValue.null
        if case .bytes(let b) = healthResponse.body, let doc = try? JSONParser.parse(b).0 { healthDoc = doc }
        let list = await hosts.allRunners()
        let ready = Set(list.filter { $0.state == .ready }.map(\.model))
        let snap = catalog.current
        let models = snap.models.map { m in
            Status.Model(id: m.id, aliases: m.aliases, kind: m.kind, file: m.path, fileState: m.state,
                         state: ready.contains(m.id) ? "loaded" : "not-loaded", quantization: m.metadata?.quantization,
                         contextLength: m.metadata?.contextLength, sizeBytes: m.metadata?.fileSize)
        }
        let body = (try? JSONCoder.encode(Status(revision: snap.revision, defaultModel: snap.defaultModel, health: healthDoc, runners: list, models: models),
                                          sortedKeys: true)) ?? []
        return .json(body, status: healthResponse.status)
    }
}
