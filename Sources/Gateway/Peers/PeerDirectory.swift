import Shared
import Synchronization

/// Whether a peer answered its last model-list read.
enum PeerState: String, Codable, Sendable {
    /// Not read yet (just configured).
    case unknown
    case up
    /// Its last read, or a request to it, failed: its models answer 503 until a read succeeds.
    case down
}

/// One peer as the dashboard shows it (`GET /api/peers`).
struct PeerStatus: Codable, Sendable, Equatable {
    var name: String
    /// Its base URL as configured, without credentials (a URL never carries them here).
    var baseURL: String
    var state: PeerState
    /// Its offered models, without the `<name>/` prefix: the last list it gave (kept while it is down).
    var models: [String]
    var error: String?
    /// Unix seconds of its last read.
    var checkedAt: Double?
    /// How long its last successful read took.
    var latencyMs: Double?
    /// Whether requests to it carry an API key (the key itself is never shown).
    var apiKey: Bool
}

/// The peers of `app_config.json`: other OpenAI-compatible servers whose models this gateway offers as
/// `<peer>/<model>`. Each is read (`GET <base>/v1/models`) every `poll_interval_seconds` (every 2 s
/// while down, so a recovered peer is back soon); a peer whose read or request fails is down, and its
/// models answer 503 at once instead of waiting on a connection. Requests reach it through
/// `RunnerRelay` like any runner, with its own API key and none of the client's credentials.
final class PeerDirectory: Sendable {
    /// A configured peer and what its reads found.
    struct Peer: Sendable {
        let config: AppConfig.Peer
        /// The base without a trailing `/v1`: requests go to `<prefix>/v1/…`.
        let prefix: String
        let client: HTTPClient
        var state: PeerState = .unknown
        var models: [String] = []
        var error: String?
        var checkedAt: Double?
        var latencyMs: Double?
        var nextReadAt: UInt64 = 0
        var reading = false
    }

    /// The header a Llama Runner sends when it reads another's model list, so the other lists only its
    /// own models (two gateways that peer with each other would otherwise list each other's entries,
    /// growing a prefix on every read).
    static let listingHeader = "x-llama-runner-peer-listing"
    /// The header counting the peers a request has passed; one that has passed `maxHops` is refused
    /// (a loop of peers).
    static let hopsHeader = "x-llama-runner-hops"
    static let maxHops = 4
    /// The longest a model-list read may take.
    static let readTimeout = 5.0
    /// Seconds between reads of a peer that is down.
    static let downInterval = 2.0

    private let table = Mutex<[String: Peer]>([:])
    /// The peers' models as catalog entries, rebuilt when a read changes them.
    private let entries = Mutex<[ResolvedModel]>([])
    /// Told after a read changed a peer's state or models (the catalog, which merges them).
    private let listener = Mutex<(@Sendable () -> Void)?>(nil)

    init() {}

    /// Sets what is told after each change.
    func onChange(_ body: @escaping @Sendable () -> Void) { listener.withLock { $0 = body } }

    /// Takes the configured peers: unchanged ones keep their state, changed ones start over.
    func configure(_ peers: [String: AppConfig.Peer]) {
        let changed = table.withLock { t -> Bool in
            var next: [String: Peer] = [:]
            for (name, config) in peers {
                if let old = t[name], old.config == config { next[name] = old; continue }
                guard let peer = Self.make(config) else { continue }
                next[name] = peer
            }
            let changed = Set(next.keys) != Set(t.keys) || next.contains { t[$0.key]?.config != $0.value.config }
            t = next
            return changed
        }
        if changed { rebuild() }
    }

    static func make(_ config: AppConfig.Peer) -> Peer? {
        guard let url = HTTPURL(config.baseURL) else { return nil }
        var path = url.target.split(separator: "?", maxSplits: 1).first.map(String.init) ?? ""
        while path.hasSuffix("/") { path.removeLast() }
        if path.hasSuffix("/v1") { path.removeLast(3) }
        let client = HTTPClient(address: .tcp(host: url.host, port: url.port), maxIdleConnections: 64, connectTimeout: 3,
                                tlsHost: url.isTLS ? url.host : nil, hostHeader: url.hostHeader)
        return Peer(config: config, prefix: path, client: client)
    }

    /// Reads every peer whose time has come (called every second); the reads run side by side.
    func readDue() async {
        let now = monotonicNanos()
        let due = table.withLock { t -> [(String, Peer)] in
            var due: [(String, Peer)] = []
            for (name, p) in t where !p.reading && p.nextReadAt <= now {
                t[name]?.reading = true
                due.append((name, p))
            }
            return due
        }
        guard !due.isEmpty else { return }
        await withTaskGroup(of: Void.self) { group in
            for (name, peer) in due { group.addTask { await self.read(name, peer) } }
        }
    }

    /// One `GET /v1/models` of a peer, and what it says of the peer's state.
    func read(_ name: String, _ peer: Peer) async {
        let start = monotonicNanos()
        let outcome: Result<[String], PeerFault> = await Self.withDeadline(Self.readTimeout) {
            var headers: HTTPHeaders = ["Accept": "application/json", Self.listingHeader: "1"]
            if let key = peer.config.apiKey { headers.add("Authorization", "Bearer \(key)") }
            let response = try await peer.client.send(HTTPClientRequest(method: "GET", target: peer.prefix + "/v1/models", headers: headers),
                                                      timeout: Self.readTimeout)
            let body = try await response.collect(upTo: 8 << 20)
            guard response.status.code == 200 else {
                throw PeerFault("GET /v1/models answered \(response.status.code): \(RunnerRelay.errorMessage(body))")
            }
            guard let data = (try? JSONParser.parse(body).0)?["data"]?.arrayValue else {
                throw PeerFault("GET /v1/models did not answer an OpenAI model list")
            }
            return data.compactMap { $0["id"]?.stringValue }.filter { !$0.isEmpty && peer.config.offers($0) }
        }
        let latency = Double(monotonicNanos() &- start) / 1e6
        let changed = table.withLock { t -> Bool in
            guard var p = t[name], p.config == peer.config else { return false }
            let before = (p.state, p.models)
            p.reading = false
            p.checkedAt = Double(unixMillis()) / 1000
            switch outcome {
            case .success(let models):
                p.state = .up
                p.models = models
                p.error = nil
                p.latencyMs = latency
            case .failure(let fault):
                p.state = .down
                p.error = fault.message
            }
            let interval = p.state == .up ? p.config.pollIntervalSeconds : min(p.config.pollIntervalSeconds, Self.downInterval)
            p.nextReadAt = monotonicNanos() &+ UInt64(interval * 1e9)
            t[name] = p
            return before != (p.state, p.models)
        }
        if changed { rebuild() }
    }

    /// A request to the peer failed to connect or broke: it is down now (and read again soon).
    func markDown(_ name: String, _ error: String) {
        let changed = table.withLock { t -> Bool in
            guard var p = t[name], p.state != .down else { return false }
            p.state = .down
            p.error = error
            p.nextReadAt = monotonicNanos() &+ UInt64(Self.downInterval * 1e9)
            t[name] = p
            return true
        }
        if changed { rebuild() }
    }

    private func rebuild() {
        let models = table.withLock { t in
            t.sorted { $0.key < $1.key }.flatMap { name, p in p.models.map { Self.entry(peer: name, model: $0) } }
        }
        entries.withLock { $0 = models }
        listener.withLock { $0 }?()
    }

    /// The catalog entries of every peer's offered models (a down peer's last list included).
    var models: [ResolvedModel] { entries.withLock { $0 } }

    var statuses: [PeerStatus] {
        table.withLock { t in
            t.sorted { $0.key < $1.key }.map { name, p in
                PeerStatus(name: name, baseURL: p.config.baseURL, state: p.state, models: p.models, error: p.error,
                           checkedAt: p.checkedAt, latencyMs: p.latencyMs, apiKey: p.config.apiKey != nil)
            }
        }
    }

    /// A `<peer>/<model>` name the peer's last list does not have, while that peer is not up: an entry
    /// anyway, so the request is answered with the peer's state (503) rather than "not found".
    func placeholder(_ requested: String) -> ResolvedModel? {
        guard let (name, model) = requested.splitOnce("/"), !model.isEmpty else { return nil }
        let peerName = String(name), id = String(model)
        return table.withLock { t in
            guard let p = t[peerName], p.state != .up, p.config.offers(id) else { return nil }
            return Self.entry(peer: peerName, model: id)
        }
    }

    /// How a request reaches a peer: its client, path prefix and key, or why it cannot (503).
    func route(_ ref: PeerModelRef) -> Result<(client: HTTPClient, prefix: String, apiKey: String?), APIError> {
        table.withLock { t in
            guard let p = t[ref.peer] else {
                return .failure(APIError(.serviceUnavailable, "peer '\(ref.peer)' is no longer configured (app_config.json peers)"))
            }
            if p.state == .down {
                let since = p.checkedAt.map { " (last read at \(Int($0)) unix time)" } ?? ""
                return .failure(APIError(.serviceUnavailable,
                    "peer '\(ref.peer)' (\(p.config.baseURL)) is down: \(p.error ?? "it does not answer")\(since); it is read again every " +
                    "\(Int(min(p.config.pollIntervalSeconds, Self.downInterval))) s", headers: ["Retry-After": "2"]))
            }
            return .success((p.client, p.prefix, p.config.apiKey))
        }
    }

    /// A peer model as a catalog entry: listed like a local one, served by the peer.
    static func entry(peer: String, model: String) -> ResolvedModel {
        let lower = model.lowercased()
        let kind: ModelKind = lower.containsText("embed") ? .embedding : lower.containsText("whisper") ? .audio : .chat
        var m = ResolvedModel(id: "\(peer)/\(model)", aliases: [], displayName: nil, path: "", runtime: "peer:\(peer)", runtimeKind: .llamaServer,
                              runtimePath: "", parameters: .object(JSONObject()), kind: kind, ttlSeconds: nil, unlisted: false, mmproj: nil,
                              autoDiscovered: false, autoUpdateModel: false, state: .available, error: nil, metadata: nil)
        m.peer = PeerModelRef(peer: peer, model: model)
        return m
    }

    /// `body` within `seconds`, or a fault saying it took too long (the body is cancelled, which closes its connection).
    static func withDeadline<T: Sendable>(_ seconds: Double, _ body: @escaping @Sendable () async throws -> T) async -> Result<T, PeerFault> {
        await withTaskGroup(of: Result<T, PeerFault>?.self) { group in
            group.addTask {
                do { return .success(try await body()) } catch let f as PeerFault { return .failure(f) } catch { return .failure(PeerFault("\(error)")) }
            }
            group.addTask {
                try? await Task.sleep(nanoseconds: UInt64(seconds * 1e9))
                return Task.isCancelled ? nil : .failure(PeerFault("no answer within \(Int(seconds)) s"))
            }
            let first = await group.next()!!
            group.cancelAll()
            return first
        }
    }
}

/// Why a peer's read failed.
struct PeerFault: Error, Sendable {
    let message: String
    init(_ message: String) { self.message = message }
}
