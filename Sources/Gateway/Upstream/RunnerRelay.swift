import Shared
import Synchronization

/// The way from a parsed API request to a runner and back: acquire (waiting for a load rather than
/// answering 5xx), send, relay or hand over the response, release, and a `metrics.record`
/// notification that never delays the request.
final class RunnerRelay: Sendable {
    /// This machine's runner-manager (also `hosts.local`).
    let runners: RPCClient
    let metrics: RPCClient
    let catalog: ModelCatalog
    /// Every runner-manager requests are placed on: this machine's, and those of `hosts`.
    let hosts: RunnerHosts
    /// Keep-alive connections per runner endpoint, and the endpoint each model was last granted on.
    private let pools = Mutex<(clients: [String: HTTPClient], endpoints: [String: String])>(([:], [:]))
    /// Models whose runner is ready, from runner-manager's `runners.state` notifications, with the
    /// notification that said so (its pid and context size).
    private let ready = Mutex<[String: RunnerState]>([:])
    /// The out-of-memory ladder step each model's load last tried, for the waiting clients' progress
    /// streams: cleared when a new load starts and when the runner ends.
    private let loadingNotes = Mutex<[String: String]>([:])

    /// Told each request's record as it goes to metrics-service (the dashboard's live Activity).
    let onRecord: @Sendable (RequestRecord) -> Void

    init(runners: RPCClient, metrics: RPCClient, catalog: ModelCatalog, hosts: RunnerHosts? = nil,
         onRecord: @escaping @Sendable (RequestRecord) -> Void = { _ in }) {
        self.runners = runners
        self.hosts = hosts ?? RunnerHosts(local: runners, loop: catalog.loop)
        self.metrics = metrics
        self.catalog = catalog
        self.onRecord = onRecord
    }

    /// A runner reached for one request. @unchecked Sendable: it is handed once from the handler to
    /// its response body closure, which runs on the same connection task; never shared.
    struct Call: @unchecked Sendable {
        let model: ResolvedModel
        let grant: AcquireResult
        /// Released by whoever ends the request, or by its own end on any path that does not.
        let lease: RunnerLease
        let upstream: HTTPClientResponse
        let receivedAt: UInt64
        /// The gateway's own time up to the response head (no load, no upstream).
        let overheadMs: Double
        /// The host whose runner answers, when the gateway uses several (`x-llama-runner-host`).
        var host: String? = nil
    }

    /// The keep-alive pool of the runner at `endpoint` (`http://host:port`), sending its key when it
    /// has one (a runner on another host); pooled by endpoint and key, so a runner started again on
    /// the same port with a new key gets a new pool.
    func client(_ endpoint: String, model: String, apiKey: String? = nil) -> HTTPClient {
        let key = apiKey.map { endpoint + " " + $0 } ?? endpoint
        return pools.withLock { p in
            p.endpoints[model] = key
            if let c = p.clients[key] { return c }
            let url = HTTPURL(endpoint)
            let c = HTTPClient(address: .tcp(host: url?.host ?? "127.0.0.1", port: url?.port ?? 0), maxIdleConnections: 64,
                               defaultHeaders: apiKey.map { ["Authorization": "Bearer \($0)"] } ?? HTTPHeaders())
            p.clients[key] = c
            return c
        }
    }

    /// A runner that is stopping gets its idle keep-alive connections closed at once: llama-server's
    /// SIGTERM exit waits about 100 ms on an open idle connection, and a swap waits for that exit.
    /// Once it has stopped or failed, its pool is dropped (a new runner gets a new port).
    func runnerStateChanged(_ change: RunnerState) {
        let (model, state) = (change.model, change.state)
        ready.withLock { table in
            // A ready runner's own "loading" progress lines do not arrive after ready; anything else ends it.
            if state == .ready { table[model] = change } else { table[model] = nil }
        }
        loadingNotes.withLock { notes in
            // Kept through ready, so a waiting stream whose answer has just come still writes the last step.
            switch state {
            case .starting, .stopping, .stopped, .failed: notes[model] = nil
            case .loading: if let step = change.step { notes[model] = step }
            case .ready: break
            }
        }
        guard state.isEnding else { return }
        let client = pools.withLock { p -> HTTPClient? in
            guard let endpoint = p.endpoints[model] else { return nil }
            if state == .stopping { return p.clients[endpoint] }
            p.endpoints[model] = nil
            return p.clients.removeValue(forKey: endpoint)
        }
        client?.closeIdle()
    }

    /// runner-manager's runners by model (empty when it does not answer within 2 s): what the listings
    /// of every surface show as loaded.
    func runnerTable() async -> [String: RunnerInfo] {
        let list = await hosts.allRunners()
        // A model ready on one host and stopped on another shows as ready.
        return Dictionary(list.map { ($0.model, $0) }, uniquingKeysWith: { a, b in a.state == .ready ? a : b })
    }

    /// Every host's runners; nil when this machine's runner-manager does not answer on one machine.
    func runnerList() async -> [RunnerInfo]? {
        if hosts.isMultiHost { return await hosts.allRunners() }
        return try? await runners.call(RunnersRPC.List.self, Empty(), timeout: 2)
    }

    /// Takes the ready runners from `runners.list` (at start and after a reconnect: runners already
    /// ready then send no notification until their next transition). A notification that arrived
    /// meanwhile is newer and wins.
    func seedReadyRunners() async {
        guard let list = try? await runners.call(RunnersRPC.List.self, Empty(), timeout: 5) else { return }
        let live = Set(list.map(\.model))
        ready.withLock { table in
            for r in list where r.state == .ready && table[r.model] == nil {
                table[r.model] = RunnerState(model: r.model, state: .ready, pid: r.pid, contextLength: r.contextLength)
            }
            for model in table.keys where !live.contains(model) { table[model] = nil }
        }
    }

    /// Whether the model's runner was ready at its last notification (a request for it needs no load).
    func isReady(_ model: String) -> Bool { ready.withLock { $0[model] != nil } }

    /// The ladder step ("out of memory on …: trying …") the model's current or last load tried.
    func loadingNote(_ model: String) -> String? { loadingNotes.withLock { $0[model] } }

    /// The context size the model's ready runner was started with (nil when not ready, or not told).
    func readyContextLength(_ model: String) -> Int? { ready.withLock { $0[model]?.contextLength } }

    /// Routes that only audio (whisper-server) models serve; every other relayed route needs a llama-server model.
    static let audioRoutes: Set<String> = ["/v1/audio/transcriptions"]

    /// Acquires a runner for `model` and sends `body` to `path`; an `APIError` when that fails.
    /// A model of the wrong kind for the route (a chat model for transcription, an audio model for chat)
    /// is refused with 400 before anything loads.
    func call(_ request: RequestOrigin, model: ResolvedModel, path: String, body: [UInt8], keepAlive: Double? = nil,
              parameters: JSONValue? = nil, accept: String = "application/json") async throws(APIError) -> Call {
        try await call(request, model: model, path: path, upload: .bytes(body), contentType: "application/json", keepAlive: keepAlive,
                       parameters: parameters, accept: accept)
    }

    func call(_ request: RequestOrigin, model: ResolvedModel, path: String, upload: HTTPClientRequest.Body, contentType: String,
              keepAlive: Double? = nil, parameters: JSONValue? = nil, accept: String = "application/json") async throws(APIError) -> Call {
        if let ref = model.peer {
            return try await callPeer(request, model: model, ref: ref, path: path, upload: upload, contentType: contentType, accept: accept)
        }
        let audioRoute = Self.audioRoutes.contains(path)
        if audioRoute != (model.kind == .audio) {
            let audio = catalog.current.models.filter { $0.kind == .audio && !$0.unlisted }.map(\.id)
            let message = audioRoute
                ? "model '\(model.id)' is a \(model.kind) model; transcription needs an audio (whisper) model" +
                  (audio.isEmpty ? " and none is configured" : ": \(audio.joined(separator: ", "))")
                : "model '\(model.id)' is an audio (whisper) model; it only serves /v1/audio/transcriptions and /v1/audio/translations"
            throw APIError(.badRequest, message, param: "model", code: "model_not_supported")
        }
        let ticket = InFlightTicket.current
        ticket?.update(model: model.id, phase: .waiting)
        let acquireStart = monotonicNanos()
        let grant: AcquireResult
        let host: RunnerHosts.Host
        do {
            let params = AcquireRequest(model: model.id, keepAlive: keepAlive, parameters: parameters, revision: catalog.current.revision)
            // A client that leaves while its model loads gives up its place at once (and, if it was
            // the load's last waiter, the load itself when another model needs the room).
            if let disconnect = request.disconnect {
                (grant, host) = try await disconnect.cancelling { try await self.place(params) }
            } else {
                (grant, host) = try await place(params)
            }
        } catch is CancellationError {
            if ticket?.isCancelled == true { throw APIError(HTTPStatus(499), InFlightTicket.cancelledMessage(model.id)) }
            throw APIError(HTTPStatus(499), "the client closed the connection while waiting for \(model.id)")
        } catch let error as APIError {
            throw error
        } catch {
            throw acquireError(error, model: model.id)
        }
        let lease = RunnerLease(id: grant.lease, runners: host.client, onRelease: hosts.isMultiHost ? hosts.track(host, model: model.id) : nil)
        ticket?.update(model: model.id, phase: .answering)
        // A remote host that stops answering ends this request (its runner may never say more).
        if !host.isLocal { ticket?.update(host: host.name) }
        let acquireEnd = monotonicNanos()
        let upstream: HTTPClientResponse
        do {
            upstream = try await client(grant.endpoint, model: model.id, apiKey: grant.apiKey).send(HTTPClientRequest(method: "POST", target: path,
                                                                               headers: ["Content-Type": contentType, "Accept": accept],
                                                                               body: upload), timeout: 900)
        } catch let error as HTTPError {
            // The request body failed on its way up (an upload over the limit, a malformed form).
            // (The lease goes back with `lease`'s end.)
            throw APIError(error)
        } catch {
            throw APIError(.badGateway, "the runner for \(model.id) did not answer: \(error)")
        }
        let head = monotonicNanos()
        let overhead = Double((head &- request.receivedAt) &- (acquireEnd &- acquireStart) &- (head &- acquireEnd)) / 1e6
        return Call(model: model, grant: grant, lease: lease, upstream: upstream, receivedAt: request.receivedAt, overheadMs: max(0, overhead),
                    host: hosts.isMultiHost ? host.name : nil)
    }

    /// How long a request may wait for its runner (a load included) before it fails.
    static let acquireSeconds = 900.0

    /// `runners.acquire`, surviving a runner-manager restart: a call whose connection dropped is sent
    /// again to the next instance (which adopts the running runners) within the request's own deadline.
    /// Safe to repeat: whatever the lost instance granted died with it. A grant that arrives after this
    /// request gave up (client gone, timed out) is handed straight back.
    func acquire(_ params: AcquireRequest, via runners: RPCClient? = nil) async throws -> AcquireResult {
        let runners = runners ?? self.runners
        let until = monotonicNanos() &+ UInt64(Self.acquireSeconds * 1e9)
        while true {
            let left = Double(until &- min(until, monotonicNanos())) / 1e9
            do {
                return try await runners.call(RunnersRPC.Acquire.self, params, timeout: max(left, 0.001)) { grant in
                    RunnerLease.send(grant.lease, via: runners)
                }
            } catch RPCError.connectionLost(let method) {
                if Task.isCancelled || monotonicNanos() >= until { throw RPCError.connectionLost(method: method) }
            }
        }
    }

    /// What a failed `runners.acquire` (or `runners.load`) is answered with.
    func acquireError(_ error: any Error, model: String) -> APIError {
        guard case RPCError.remote(let fault) = error else {
            return APIError(.serviceUnavailable, "runner-manager is unavailable: \(error)")
        }
        switch fault.code {
        case RPCFault.notFoundCode:
            return APIError(.notFound, fault.message, param: "model", code: "model_not_found")
        case RPCFault.busyCode:
            return APIError(.serviceUnavailable, fault.message, headers: ["Retry-After": fault.data?["retryAfter"] ?? "2"])
        default:
            return APIError(.serviceUnavailable, fault.message)
        }
    }

    /// The one `metrics.record` of a relayed request. `status` is what the client was told, except that
    /// a response that failed after its head went out (`error` set, the client saw 200 and then an
    /// error line or a cut stream) is recorded as 502: the request failed.
    func record(_ call: Call, api: String, route: String, status: Int, firstByteAt: UInt64?, usage: Usage, clientGone: Bool,
                audioSeconds: Double? = nil, error: String? = nil) {
        let now = monotonicNanos()
        // A cancel from the dashboard's in-flight table says so, whatever the stream's own error was.
        let ticket = InFlightTicket.current
        let cancelled = ticket?.cancelOutcome(call.model.id)
        let error = cancelled?.message ?? error
        let recorded = cancelled?.status ?? (error != nil && status < 400 ? HTTPStatus.badGateway.code : status)
        let record = RequestRecord(
            model: call.model.id, api: api, route: route, status: recorded,
            timeToFirstByteMs: Double((firstByteAt ?? now) &- call.receivedAt) / 1e6, durationMs: Double(now &- call.receivedAt) / 1e6,
            promptTokens: usage.promptTokens, completionTokens: usage.completionTokens, cachedTokens: usage.cachedTokens,
            loadMs: call.grant.loadDurationMs, overheadMs: call.overheadMs, clientDisconnected: clientGone, audioSeconds: audioSeconds,
            error: error, requestId: ticket.map { String($0.id) })
        metrics.notify(MetricsRPC.Record.self, record)
        onRecord(record)
    }

    /// Headers every relayed response carries.
    func timingHeaders(_ call: Call) -> HTTPHeaders {
        var h: HTTPHeaders = ["x-llama-runner-overhead-ms": String(format3: call.overheadMs)]
        if call.grant.loadDurationMs > 0 { h.add("x-llama-runner-load-ms", String(call.grant.loadDurationMs)) }
        if let host = call.host { h.add("x-llama-runner-host", host) }
        return h
    }

    /// Relays the runner's response as it is: status, content type, and the body piece by piece as it
    /// arrives (each SSE event is flushed when it comes). A client that goes away closes the upstream
    /// connection, which stops generation; an upstream that dies mid-stream ends the stream with an
    /// error event in `shape`.
    func passthrough(_ call: Call, api: String, route: String, shape: ErrorShape, contentType: String? = nil,
                     audioSeconds: Double? = nil) -> HTTPResponse {
        var headers = timingHeaders(call)
        let contentType = contentType ?? call.upstream.headers["content-type"] ?? "application/json"
        headers.add("Content-Type", contentType)
        let isStream = contentType.hasPrefix("text/event-stream")
        if isStream { headers.add("Cache-Control", "no-cache") }
        let length: Int? = if case .length(let n) = call.upstream.head.framing { n } else { nil }
        let status = call.upstream.status
        let box = UpstreamBox(call.upstream)
        return HTTPResponse(status: status, headers: headers, body: .stream(contentLength: length) { [self] writer in
            let upstream = box.take()
            var firstByte: UInt64?
            var clientGone = false
            var failure: String?
            var scanner = UsageScanner()
            var errorBody: [UInt8] = []
            while true {
                let piece: [UInt8]?
                do {
                    piece = try await upstream.read()
                } catch {
                    failure = RunnerRelay.midStreamFailure(call.model.id, error)
                    if isStream { try? await writer.write(shape.streamError(failure!)) }
                    break
                }
                guard let piece else { break }
                if firstByte == nil { firstByte = monotonicNanos() }
                scanner.feed(piece)
                if status.code >= 400 && errorBody.count < 4096 { errorBody += piece.prefix(4096 - errorBody.count) }
                do {
                    try await writer.write(piece)
                } catch {
                    upstream.abandon()
                    clientGone = true
                    break
                }
            }
            let usage = scanner.usage
            call.lease.release(usage: usage)
            if failure == nil && status.code >= 400 { failure = Self.errorMessage(errorBody) }
            record(call, api: api, route: route, status: status.code, firstByteAt: firstByte, usage: usage, clientGone: clientGone,
                   audioSeconds: audioSeconds, error: failure)
        })
    }

    /// Why a relayed stream ended early: a cancel from the dashboard's in-flight table, or the runner's failure.
    static func midStreamFailure(_ model: String, _ error: any Error) -> String {
        InFlightTicket.current?.cancelOutcome(model)?.message ?? "the runner for \(model) failed mid-stream: \(error)"
    }

    /// The message of an error body (`{"error":{"message"}}`, `{"error":"…"}`) or its text.
    static func errorMessage(_ body: [UInt8]) -> String {
        let doc = try? JSONParser.parse(body).0
        let text = doc?["error"]?["message"]?.stringValue ?? doc?["error"]?.stringValue ?? String(decoding: body, as: UTF8.self)
        return String(text.prefix(500))
    }
}

/// Moves a (non-Sendable) upstream response into the response body closure, which runs once on the
/// connection's task.
final class UpstreamBox: @unchecked Sendable {
    // @unchecked Sendable: the response is handed to exactly one body closure; `take()` makes a second
    // taker a precondition failure instead of a data race.
    private let upstream: HTTPClientResponse
    private let taken = Atomic<Bool>(false)
    init(_ response: HTTPClientResponse) { upstream = response }

    /// The response, for the one closure that relays it. Once.
    func take() -> HTTPClientResponse {
        let second = taken.exchange(true, ordering: .acquiringAndReleasing)
        precondition(!second, "an upstream response was taken by two readers")
        return upstream
    }
}


extension String {
    init(format3 value: Double) {
        let scaled = (value * 1000).rounded() / 1000
        self = "\(scaled)"
    }
}

/// What the relay needs of the request it serves (Sendable, unlike the request and its body stream):
/// when it arrived, and how to tell that its client has gone.
struct RequestOrigin: Sendable {
    let receivedAt: UInt64
    let disconnect: ClientDisconnect?
    /// Gateways the request has already passed (`x-llama-runner-hops`, set by a peer that relayed it).
    var hops = 0

    init(_ request: HTTPRequest) {
        receivedAt = request.receivedAt
        disconnect = request.disconnect
        hops = request.head.headers[PeerDirectory.hopsHeader].flatMap { Int($0) } ?? 0
    }

    /// A request that is not an HTTP exchange of its own (a message on a WebSocket): its client's
    /// departure reaches it as task cancellation instead.
    init(receivedAt: UInt64) {
        self.receivedAt = receivedAt
        disconnect = nil
    }
}
