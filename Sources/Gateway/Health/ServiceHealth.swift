import Shared

/// Answers `GET /health` on every public port: every service's `health`, 200 when all are up and
/// 503 naming the ones that are down.
struct ServiceHealth: Sendable {
    let context: ServiceContext
    let clients: [(ServiceName, RPCClient)]

    struct Report: Encodable {
        var status: String
        var down: [String]
        var services: [String: HealthInfo]
        var errors: [String: String]
    }

    func response() async -> HTTPResponse {
        var report = Report(status: "ok", down: [], services: [:], errors: [:])
        report.services[ServiceName.gateway.rawValue] = context.healthInfo()
        await withTaskGroup(of: (ServiceName, Result<HealthInfo, any Error>).self) { group in
            for (name, client) in clients {
                group.addTask { await Self.probe(name, client) }
            }
            for await (name, result) in group {
                switch result {
                case .success(let info): report.services[name.rawValue] = info
                case .failure(let error):
                    report.down.append(name.rawValue)
                    report.errors[name.rawValue] = String(describing: error)
                }
            }
        }
        report.down.sort()
        if !report.down.isEmpty { report.status = "unavailable: " + report.down.joined(separator: ", ") + " down" }
        let body = (try? JSONCoder.encode(report, sortedKeys: true)) ?? []
        return .json(body, status: report.down.isEmpty ? .ok : .serviceUnavailable)
    }

    /// One service's `health`. The tuple is built only after the call has returned: Swift 6.3 at `-O`
    /// loses the part of a task's tuple result written before a suspension — `return (name, try await …)`
    /// inside a child task came back with every name as `.registry`, so `/health` listed one service
    /// (swiftlang/swift#91911). `Tests/Python` runs the release build so a miscompile like it shows.
    private static func probe(_ name: ServiceName, _ client: RPCClient) async -> (ServiceName, Result<HealthInfo, any Error>) {
        let result: Result<HealthInfo, any Error>
        do {
            result = .success(try await client.call(ServiceRPC.Health.self, Empty(), timeout: 1))
        } catch {
            result = .failure(error)
        }
        return (name, result)
    }
}
