import Shared

/// The dashboard API on 8585: models (config + runtime state + metadata), load/unload, edits
/// with revisions (409 on conflict, 422 with the validator's messages), discovery, app config, backups,
/// metrics, recent requests, logs and server-sent events. Writes need the admin token whenever one is
/// configured, and always when the dashboard binds a non-loopback address.
struct DashboardAPI: Sendable {
    let catalog: ModelCatalog
    let registry: RPCClient
    let runners: RPCClient
    /// Every runner-manager (this machine's is `runners`).
    let hosts: RunnerHosts
    let metrics: RPCClient
    let hub: EventHub
    let bodies: JSONBodyReader
    let paths: RuntimePaths
    let adminToken: String?
    let loopbackOnly: Bool
    let loop: EventLoop
    let pulls: PullTracker
    let inflight: InFlightTable
    /// The app config this gateway started with: a saved change to what it reads only at start is
    /// reported by `GET /api/config` as needing a restart.
    let startedWith: AppConfig

    static func json(_ v: JSONValue, status: HTTPStatus = .ok) -> HTTPResponse { OllamaAPI.json(v, status: status) }

    static func encoded<T: Encodable>(_ value: T) -> HTTPResponse {
        .json((try? JSONCoder.encode(value, sortedKeys: true)) ?? [])
    }

    static func error(_ status: HTTPStatus, _ message: String, details: [String] = [], extra: [(String, JSONValue)] = []) -> HTTPResponse {
        var e = JSONObject([("message", .string(message)), ("type", .string(ErrorShape.openAIType(status)))])
        if !details.isEmpty { e["details"] = .array(details.map(JSONValue.string)) }
        for (k, v) in extra { e[k] = v }
        return json(.object(JSONObject([("error", .object(e))])), status: status)
    }

    /// RPC faults from the registry or runner-manager as HTTP answers.
    static func fault(_ error: any Error) -> HTTPResponse {
        guard case RPCError.remote(let f) = error else { return Self.error(.serviceUnavailable, "a service is unavailable: \(error)") }
        switch f.code {
        case RPCFault.conflictCode:
            return Self.error(.conflict, f.message, extra: [("current_revision", .string(f.data?["current"] ?? ""))])
        case RPCFault.validationCode:
            return Self.error(.unprocessableEntity, f.message, details: (f.data?["errors"] ?? f.message).split(separator: "\n").map(String.init))
        case RPCFault.notFoundCode:
            return Self.error(.notFound, f.message)
        case RPCFault.invalidParamsCode:
            return Self.error(.badRequest, f.message)
        default:
            return Self.error(.serviceUnavailable, f.message)
        }
    }

    func register(on router: inout Router) {
        router.get("/api/models") { _, _ in await models() }
        router.post("/api/models/{id}/load") { r, p in try await write(r) { await load(p["id"] ?? "") } }
        router.post("/api/models/{id}/unload") { r, p in try await write(r) { await unload(p["id"] ?? "") } }
        router.put("/api/models/{id}") { r, p in try await write(r) { try await updateModel(r, p["id"] ?? "") } }
        router.delete("/api/models/{id}") { r, p in try await write(r) { await deleteModel(r, p["id"] ?? "") } }
        // Pulls from the hub (model-registry runs them; progress comes on /api/events as `pull`).
        router.post("/api/models/pull") { r, _ in try await write(r) { try await startPull(r) } }
        router.get("/api/models/pulls") { _, _ in
            do throws(APIError) { return Self.encoded(try await pulls.list()) } catch { return Self.error(error.status, error.message) }
        }
        router.delete("/api/models/pulls/{job}") { r, p in
            try await write(r) {
                do throws(APIError) { return Self.encoded(try await pulls.cancel(p["job"] ?? "")) } catch { return Self.error(error.status, error.message) }
            }
        }
        router.post("/api/discover") { r, _ in try await write(r) { await rpc { try await registry.call(RegistryRPC.Discover.self, Empty(), timeout: 60) } } }
        router.get("/api/config") { _, _ in await config() }
        router.put("/api/config") { r, _ in try await write(r) { try await updateConfig(r) } }
        router.get("/api/config/schema/{file}") { _, p in
            await rpc { try await registry.call(RegistryRPC.Schema.self, .init(file: p["file"] ?? ""), timeout: 5) }
        }
        router.get("/api/config/documents") { _, _ in
            await rpc {
                var docs = try await registry.call(RegistryRPC.Documents.self, Empty())
                docs.app = ConfigSecrets.redact(docs.app)
                return docs
            }
        }
        router.get("/api/config/backups/{name}") { _, p in
            await rpc {
                var backup = try await registry.call(RegistryRPC.Backup.self, .init(name: p["name"] ?? ""))
                if backup.file == "app_config.json" { backup.document = ConfigSecrets.redact(backup.document) }
                return backup
            }
        }
        router.get("/api/config/backups") { _, _ in await rpc { try await registry.call(RegistryRPC.Backups.self, Empty()) } }
        router.post("/api/config/backups/{name}/restore") { r, p in
            try await write(r) { await rpc { try await registry.call(RegistryRPC.Restore.self, RestoreRequest(name: p["name"] ?? "")) } }
        }
        router.get("/api/metrics/summary") { _, _ in await rpc { try await metrics.call(MetricsRPC.Summary.self, Empty(), timeout: 5) } }
        router.get("/api/metrics/series") { r, _ in
            let request = SeriesRequest(name: r.head.queryValue("name") ?? "requests_per_second", window: r.head.queryValue("window") ?? "1h")
            return await rpc { try await metrics.call(MetricsRPC.SeriesQuery.self, request, timeout: 5) }
        }
        router.get("/api/requests") { r, _ in
            let limit = r.head.queryValue("limit").flatMap { Int($0) } ?? 100
            return await rpc { try await metrics.call(MetricsRPC.Requests.self, RecordsRequest(limit: limit), timeout: 5) }
        }
        // The requests being served now, and a cancel for one (the dashboard's Activity page).
        router.get("/api/inflight") { _, _ in Self.encoded(inflight.list()) }
        // A captured exchange (`dashboard.capture`): the request's and the answer's bodies, by request id.
        router.get("/api/captures/{id}") { _, p in
            guard let ring = inflight.capture else {
                return Self.error(.notFound, "request bodies are not captured: set dashboard.capture to true in app_config.json")
            }
            guard let exchange = ring.find(p["id"] ?? "") else {
                return Self.error(.notFound, "no captured request \(p["id"] ?? "") (the last \(ring.limit) are kept)")
            }
            return Self.encoded(exchange)
        }
        router.post("/api/inflight/{id}/cancel") { r, p in
            try await write(r) {
                let id = p["id"] ?? ""
                return inflight.cancel(id) ? Self.json(.object(JSONObject([("id", .string(id)), ("cancelled", .bool(true))])))
                                           : Self.error(.notFound, "no request \(id) is in flight (it may have ended)")
            }
        }
        // A service restarted through the launcher's control socket (after a config change that needs it).
        router.post("/api/services/{name}/restart") { r, p in try await write(r) { await restart(p["name"] ?? "") } }
        router.get("/api/peers") { _, _ in Self.encoded(catalog.peers.statuses) }
        router.get("/api/hosts") { _, _ in Self.encoded(hosts.statuses) }
        router.get("/api/hardware") { _, _ in await rpc { try await runners.call(RunnersRPC.Hardware.self, Empty(), timeout: 2) } }
        router.get("/api/logs/{name}") { r, p in await logs(p["name"] ?? "", tail: r.head.queryValue("tail").flatMap { Int($0) } ?? 200) }
        router.get("/api/events") { _, _ in events() }
    }

    func rpc<T: Encodable>(_ body: () async throws -> T) async -> HTTPResponse {
        do {
            return Self.encoded(try await body())
        } catch {
            return Self.fault(error)
        }
    }

    /// Writes need the admin token when one is set, and are refused on a non-loopback bind without one.
    /// Every state-changing call goes through here. Its body must be declared JSON: a browser sends a
    /// form or `text/plain` cross-site without a preflight, `application/json` never (and the origin
    /// check in `SurfaceGuard` refuses foreign pages outright). Then the admin token, when one is set
    /// or the dashboard is reachable beyond this machine.
    func write(_ request: HTTPRequest, _ body: () async throws -> HTTPResponse) async throws -> HTTPResponse {
        let type = request.headers["content-type"].map { $0.split(separator: ";").first.map { $0.trimmingSpaces().lowercased() } ?? "" }
        guard type == "application/json" else {
            return Self.error(.unsupportedMediaType, "changes must be sent as Content-Type: application/json (got \(request.headers["content-type"].map { "\"\($0)\"" } ?? "none"))")
        }
        if let token = adminToken {
            guard let presented = SurfaceGuard.adminToken(in: request), SurfaceGuard.constantTimeEquals(token, presented) else {
                return Self.error(.unauthorized, "this change needs the admin token (dashboard.admin_token): send Authorization: Bearer <token>")
            }
        } else if !loopbackOnly {
            return Self.error(.unauthorized, "the dashboard listens beyond this machine: set dashboard.admin_token in app_config.json to allow changes")
        }
        return try await body()
    }

    /// `{name, quantization?}` → the pull's status (202: it runs on).
    func startPull(_ request: HTTPRequest) async throws -> HTTPResponse {
        let doc = try await bodies.read(request).0
        guard let name = (doc["name"] ?? doc["model"])?.stringValue, !name.isEmpty else { return Self.error(.badRequest, "name is required") }
        do throws(APIError) {
            var r = Self.encoded(try await pulls.start(name, quantization: doc["quantization"]?.stringValue))
            r.status = HTTPStatus(202)
            return r
        } catch {
            return Self.error(error.status, error.message)
        }
    }

    func models() async -> HTTPResponse {
        let runnerList = await hosts.allRunners()
        let docs = try? await registry.call(RegistryRPC.Documents.self, Empty(), timeout: 5)
        let snap = catalog.current
        // Before a load: the estimate per device, on the GPU a load would go to now (the freest) or the CPU.
        let freest = (try? await runners.call(RunnersRPC.Hardware.self, Empty(), timeout: 2))?.gpus.max { $0.freeBytes < $1.freeBytes }
        var list: [JSONValue] = []
        let peerStates = Dictionary(catalog.peers.statuses.map { ($0.name, $0.state.rawValue) }, uniquingKeysWith: { a, _ in a })
        for m in snap.models {
            var o = JSONObject()
            if let v = try? JSONCoder.encodeValue(m) { o["model"] = v }
            if let ref = m.peer {
                // Served by another server: its state is the peer's, and nothing here loads or edits it.
                o["peerState"] = .string(peerStates[ref.peer] ?? PeerState.unknown.rawValue)
                o["loaded"] = .bool(false)
                o["entry"] = .null
                list.append(.object(o))
                continue
            }
            if m.kind != .audio {
                let estimate = MemoryEstimate.of(metadata: m.metadata, parameters: m.parameters, gpus: freest.map { [$0.id] } ?? [])
                o["estimate"] = .object(JSONObject(estimate.devices.sorted { $0.key < $1.key }.map { ($0.key, JSONValue.int($0.value.total)) }))
            }
            if let r = runnerList.first(where: { $0.model == m.id }), let v = try? JSONCoder.encodeValue(r) {
                o["runner"] = v
            }
            o["entry"] = docs?.models["models"]?[m.id] ?? .null
            o["loaded"] = .bool(runnerList.contains { $0.model == m.id && $0.state == .ready })
            list.append(.object(o))
        }
        return Self.json(.object(JSONObject([("revision", .string(docs?.revision ?? snap.revision)), ("defaultModel", snap.defaultModel.map(JSONValue.string) ?? .null),
                                             ("residentModel", docs?.app["resident_model"] ?? .null),
                                             ("models", .array(list))])))
    }

    func load(_ id: String) async -> HTTPResponse {
        await rpc { try await runners.call(RunnersRPC.Load.self, AcquireRequest(model: id), timeout: 900) }
    }

    func unload(_ id: String) async -> HTTPResponse {
        await rpc { try await runners.call(RunnersRPC.Unload.self, ModelRef(model: id), timeout: 30) }
    }

    /// Merges the given fields (`parameters`, `aliases`, `ttl_seconds`, …; null removes one) onto the
    /// model's entry, or replaces it with `entry`. `revision` is required: a stale one is a 409.
    func updateModel(_ request: HTTPRequest, _ id: String) async throws -> HTTPResponse {
        let doc = try await bodies.read(request).0
        guard let revision = doc["revision"]?.stringValue else { return Self.error(.badRequest, "revision is required (from GET /api/models or /api/config)") }
        var entry: JSONValue
        if let whole = doc["entry"] {
            entry = whole
        } else {
            guard let current = try? await registry.call(RegistryRPC.Documents.self, Empty()) else { return Self.error(.serviceUnavailable, "model-registry is unavailable") }
            entry = current.models["models"]?[id] ?? .object(JSONObject())
            for (k, v) in doc.objectValue?.entries ?? [] where k != "revision" {
                entry[k] = v.isNull ? nil : v
            }
        }
        return await rpc { try await registry.call(RegistryRPC.UpdateModel.self, ModelEdit(revision: revision, id: id, entry: entry)) }
    }

    func deleteModel(_ request: HTTPRequest, _ id: String) async -> HTTPResponse {
        guard let revision = request.head.queryValue("revision") else { return Self.error(.badRequest, "revision is required: DELETE /api/models/{id}?revision=…") }
        return await rpc { try await registry.call(RegistryRPC.RemoveModel.self, ModelEdit(revision: revision, id: id)) }
    }

    func config() async -> HTTPResponse {
        do {
            let docs = try await registry.call(RegistryRPC.Documents.self, Empty())
            let status = try await registry.call(RegistryRPC.Status.self, Empty())
            var files: [JSONValue] = []
            for f in status.files {
                files.append(.object(JSONObject([("name", .string(f.name)), ("state", .string(f.state.rawValue)),
                                                 ("errors", .array(f.errors.map(JSONValue.string))), ("warnings", .array(f.warnings.map(JSONValue.string)))])))
            }
            let current = try await registry.call(RegistryRPC.AppConfigGet.self, Empty())
            let keys = startedWith.gatewayRestartKeys(now: current)
            let restart: [JSONValue] = keys.isEmpty ? [] : [.object(JSONObject([("service", .string(ServiceName.gateway.rawValue)),
                                                                                 ("keys", .array(keys.map(JSONValue.string)))]))]
            // `effective`: the file with every default filled in, as the services read it (the form shows these).
            let effective = (try? JSONCoder.encodeValue(current)) ?? .null
            return Self.json(.object(JSONObject([("revision", .string(docs.revision)), ("app", ConfigSecrets.redact(docs.app)),
                                                 ("effective", ConfigSecrets.redact(effective)), ("files", .array(files)),
                                                 ("restart", .array(restart))])))
        } catch {
            return Self.fault(error)
        }
    }

    func updateConfig(_ request: HTTPRequest) async throws -> HTTPResponse {
        let doc = try await bodies.read(request).0
        guard let revision = doc["revision"]?.stringValue, let sent = doc["app"] else {
            return Self.error(.badRequest, "revision and app are required")
        }
        // Secrets come back as the placeholder reads showed: the file's own stand where they did.
        guard let current = try? await registry.call(RegistryRPC.Documents.self, Empty()) else {
            return Self.error(.serviceUnavailable, "model-registry is unavailable")
        }
        let app = ConfigSecrets.restore(sent, from: current.app)
        return await rpc { try await registry.call(RegistryRPC.UpdateApp.self, DocumentEdit(revision: revision, value: app)) }
    }

    /// Restarts one service through the launcher (`launcher.restart`). The gateway's own restart is
    /// answered first (202) and asked for just after: its answer could not outlive it. Its listening
    /// sockets stay with the launcher, so no connection attempt is refused meanwhile.
    func restart(_ name: String) async -> HTTPResponse {
        guard let service = ServiceName(argument: name) else {
            return Self.error(.badRequest, "no service named \(name): one of \(ServiceName.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        let (socket, loop) = (paths.launcherSocket, self.loop)
        @Sendable func ask() async throws -> ServiceStatus {
            let launcher = RPCClient(path: socket, loop: loop)
            launcher.start()
            defer { Task { await launcher.close() } }
            return try await launcher.call(LauncherRPC.Restart.self, ServiceRef(service: service.rawValue), timeout: 60)
        }
        if service == .gateway {
            Task(executorPreference: loop) {
                try? await loop.sleep(seconds: 0.2)
                _ = try? await ask()
            }
            return Self.json(.object(JSONObject([("service", .string(service.rawValue)), ("restarting", .bool(true))])), status: HTTPStatus(202))
        }
        do {
            return Self.encoded(try await ask())
        } catch {
            return Self.fault(error)
        }
    }

    /// A service's log (`gateway`, `model-registry`, …, `launcher`) or a model's runner log.
    func logs(_ name: String, tail: Int) async -> HTTPResponse {
        let count = min(max(tail, 1), 2000)
        if ServiceName(argument: name) != nil || name == "launcher" {
            let file = name == "launcher" ? "launcher" : ServiceName(argument: name)!.rawValue
            let path = paths.log(file)
            let lines = await BlockingPool.shared.run { LogFile.tail(path, lines: count) }
            return Self.json(.object(JSONObject([("name", .string(file)), ("lines", .array(lines.map(JSONValue.string)))])))
        }
        guard let model = catalog.resolve(name) else { return Self.error(.notFound, "no service or model named \(name)") }
        return await rpc { try await runners.call(RunnersRPC.Logs.self, LogsRequest(model: model.id, tail: min(count, 500))) }
    }

    /// Server-sent events: `runner` (state changes), `registry` (new revision), `metrics` (every 2 s),
    /// `request` (each finished model request, as `/api/requests` lists them), `pull`, `log`, `host` (a runner host went up or down),
    /// and a `: ping` comment every 15 s so proxies keep the stream open.
    func events() -> HTTPResponse {
        let hub = self.hub
        let loop = self.loop
        return HTTPResponse(status: .ok, headers: ["Content-Type": "text/event-stream", "Cache-Control": "no-cache"],
                            body: .stream(contentLength: nil) { writer in
            let (id, subscriber) = hub.subscribe()
            defer { hub.unsubscribe(id) }
            try await writer.write(SSEEvent(event: "hello", data: #"{"version":"\#(LlamaRunnerVersion.current)"}"#).encoded())
            while true {
                let events = await subscriber.next(loop: loop, seconds: 15)
                if events.isEmpty {
                    try await writer.write(SSEEvent.comment())
                } else {
                    try await writer.write(events.flatMap { $0 })
                }
            }
        })
    }
}
