import Shared
import Synchronization

/// The way from a parsed API request to a runner and back: acquire (waiting for a load rather than
/// answering 5xx), send, relay or hand over the response, release, and a `metrics.record`
/// notification that never delays the request.
final class RunnerRelay: Sendable {
    let runners: RPCClient
    let metrics: RPCClient
    let catalog: ModelCatalog
    /// Keep-alive connections per runner endpoint, and the endpoint each model was last granted on.
    private let pools = Mutex<(clients: [String: HTTPClient], endpoints: [String: String])>(([:], [:]))

    init(runners: RPCClient, metrics: RPCClient, catalog: ModelCatalog) {
        self.runners = runners
        self.metrics = metrics
        self.catalog = catalog
    }

    /// A runner reached for one request. @unchecked Sendable: it is handed once from the handler to
    /// its response body closure, which runs on the same connection task; never shared.
    struct Call: @unchecked Sendable {
        let model: ResolvedModel
        let grant: AcquireResult
        let upstream: HTTPClientResponse
        let receivedAt: UInt64
        /// The gateway's own time up to the response head (no load, no upstream).
        let overheadMs: Double
    }

    func client(_ endpoint: String, model: String) -> HTTPClient {
        pools.withLock { p in
            p.endpoints[model] = endpoint
            if let c = p.clients[endpoint] { return c }
            let port = UInt16(endpoint.split(separator: ":").last ?? "") ?? 0
            let c = HTTPClient(address: .tcp(host: "127.0.0.1", port: port), maxIdleConnections: 64)
            p.clients[endpoint] = c
            return c
        }
    }

    /// A runner that is stopping gets its idle keep-alive connections closed at once: llama-server's
    /// SIGTERM exit waits about 100 ms on an open idle connection, and a swap waits for that exit.
    /// Once it has stopped or failed, its pool is dropped (a new runner gets a new port).
    func runnerStateChanged(model: String, state: String) {
        guard state == "stopping" || state == "stopped" || state == "failed" else { return }
        let client = pools.withLock { p -> HTTPClient? in
            guard let endpoint = p.endpoints[model] else { return nil }
            if state == "stopping" { return p.clients[endpoint] }
            p.endpoints[model] = nil
            return p.clients.removeValue(forKey: endpoint)
        }
        client?.closeIdle()
    }

    /// Routes that only audio (whisper-server) models serve; every other relayed route needs a llama-server model.
    static let audioRoutes: Set<String> = ["/v1/audio/transcriptions"]

    /// Acquires a runner for `model` and sends `body` to `path`. On failure, the error response in `shape`.
    /// A model of the wrong kind for the route (a chat model for transcription, an audio model for chat)
    /// is refused with 400 before anything loads.
    func call(_ request: HTTPRequest, model: ResolvedModel, path: String, body: [UInt8], keepAlive: Double? = nil,
              parameters: JSONValue? = nil, shape: ErrorShape, accept: String = "application/json") async -> Result<Call, HTTPResponseBox> {
        await call(request, model: model, path: path, upload: .bytes(body), contentType: "application/json", keepAlive: keepAlive,
                   parameters: parameters, shape: shape, accept: accept)
    }

    func call(_ request: HTTPRequest, model: ResolvedModel, path: String, upload: HTTPClientRequest.Body, contentType: String,
              keepAlive: Double? = nil, parameters: JSONValue? = nil, shape: ErrorShape,
              accept: String = "application/json") async -> Result<Call, HTTPResponseBox> {
        let audioRoute = Self.audioRoutes.contains(path)
        if audioRoute != (model.kind == "audio") {
            let audio = catalog.current.models.filter { $0.kind == "audio" && !$0.unlisted }.map(\.id)
            let message = audioRoute
                ? "model '\(model.id)' is a \(model.kind) model; transcription needs an audio (whisper) model" +
                  (audio.isEmpty ? " and none is configured" : ": \(audio.joined(separator: ", "))")
                : "model '\(model.id)' is an audio (whisper) model; it only serves /v1/audio/transcriptions and /v1/audio/translations"
            return .failure(HTTPResponseBox(shape.response(.badRequest, message, param: "model", code: "model_not_supported")))
        }
        let acquireStart = monotonicNanos()
        let grant: AcquireResult
        do {
            grant = try await runners.call(RunnersRPC.Acquire.self, AcquireRequest(model: model.id, keepAlive: keepAlive, parameters: parameters), timeout: 900)
        } catch {
            return .failure(HTTPResponseBox(acquireError(error, model: model.id, shape: shape)))
        }
        let acquireEnd = monotonicNanos()
        let upstream: HTTPClientResponse
        do {
            upstream = try await client(grant.endpoint, model: model.id).send(HTTPClientRequest(method: "POST", target: path,
                                                                               headers: ["Content-Type": contentType, "Accept": accept],
                                                                               body: upload), timeout: 900)
        } catch let error as HTTPError {
            // The request body failed on its way up (an upload over the limit, a malformed form).
            release(grant.lease)
            return .failure(HTTPResponseBox(shape.response(error.status, error.message,
                                                           headers: error.closesConnection ? ["Connection": "close"] : HTTPHeaders())))
        } catch {
            release(grant.lease)
            return .failure(HTTPResponseBox(shape.response(.badGateway, "the runner for \(model.id) did not answer: \(error)")))
        }
        let head = monotonicNanos()
        let overhead = Double((head &- request.receivedAt) &- (acquireEnd &- acquireStart) &- (head &- acquireEnd)) / 1e6
        return .success(Call(model: model, grant: grant, upstream: upstream, receivedAt: request.receivedAt, overheadMs: max(0, overhead)))
    }

    func acquireError(_ error: any Error, model: String, shape: ErrorShape) -> HTTPResponse {
        guard case RPCError.remote(let fault) = error else {
            return shape.response(.serviceUnavailable, "runner-manager is unavailable: \(error)")
        }
        switch fault.code {
        case RPCFault.notFoundCode:
            return shape.response(.notFound, fault.message, param: "model", code: "model_not_found")
        case RPCFault.busyCode:
            let retry = fault.data?["retryAfter"] ?? "2"
            return shape.response(.serviceUnavailable, fault.message, headers: ["Retry-After": retry])
        default:
            return shape.response(.serviceUnavailable, fault.message)
        }
    }

    func release(_ lease: UInt64, usage: Usage? = nil) {
        let runners = self.runners
        Task(executorPreference: EventLoop.shared) {
            _ = try? await runners.call(RunnersRPC.Release.self, ReleaseRequest(lease: lease, usage: usage), timeout: 10)
        }
    }

    func record(_ call: Call, api: String, route: String, status: Int, firstByteAt: UInt64?, usage: Usage, clientGone: Bool,
                audioSeconds: Double? = nil) {
        let now = monotonicNanos()
        metrics.notify(MetricsRPC.Record.self, RequestRecord(
            model: call.model.id, api: api, route: route, status: status,
            timeToFirstByteMs: Double((firstByteAt ?? now) &- call.receivedAt) / 1e6, durationMs: Double(now &- call.receivedAt) / 1e6,
            promptTokens: usage.promptTokens, completionTokens: usage.completionTokens, loadMs: call.grant.loadDurationMs,
            overheadMs: call.overheadMs, clientDisconnected: clientGone, audioSeconds: audioSeconds))
    }

    /// Headers every relayed response carries.
    func timingHeaders(_ call: Call) -> HTTPHeaders {
        var h: HTTPHeaders = ["x-llama-runner-overhead-ms": String(format3: call.overheadMs)]
        if call.grant.loadDurationMs > 0 { h.add("x-llama-runner-load-ms", String(call.grant.loadDurationMs)) }
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
            var firstByte: UInt64?
            var clientGone = false
            var tail: [UInt8] = []
            while true {
                let piece: [UInt8]?
                do {
                    piece = try await box.response.read()
                } catch {
                    if isStream { try? await writer.write(shape.streamError("the runner for \(call.model.id) failed mid-stream: \(error)")) }
                    break
                }
                guard let piece else { break }
                if firstByte == nil { firstByte = monotonicNanos() }
                tail = Array((tail + piece).suffix(4096))
                do {
                    try await writer.write(piece)
                } catch {
                    box.response.abandon()
                    clientGone = true
                    break
                }
            }
            let usage = Self.usage(in: tail)
            release(call.grant.lease, usage: usage)
            record(call, api: api, route: route, status: status.code, firstByteAt: firstByte, usage: usage, clientGone: clientGone,
                   audioSeconds: audioSeconds)
        })
    }

    /// Token counts from the end of an OpenAI-style response (`usage` object), if present.
    static func usage(in tail: [UInt8]) -> Usage {
        func number(_ key: String) -> Int {
            let needle = Array("\"\(key)\":".utf8)
            guard tail.count >= needle.count else { return 0 }
            var i = tail.count - needle.count
            while i >= 0 {
                if tail[i] == needle[0] && Array(tail[i..<(i + needle.count)]) == needle {
                    var j = i + needle.count
                    while j < tail.count && tail[j] == 32 { j += 1 }
                    var digits = 0
                    while j < tail.count && tail[j] >= 48 && tail[j] <= 57 {
                        digits = digits * 10 + Int(tail[j] - 48)
                        j += 1
                    }
                    return digits
                }
                i -= 1
            }
            return 0
        }
        return Usage(promptTokens: number("prompt_tokens"), completionTokens: number("completion_tokens"))
    }
}

/// Moves a (non-Sendable) upstream response into the response body closure, which runs once on the
/// connection's task.
final class UpstreamBox: @unchecked Sendable {
    let response: HTTPClientResponse
    init(_ response: HTTPClientResponse) { self.response = response }
}

/// An HTTPResponse as an error value.
struct HTTPResponseBox: Error {
    let response: HTTPResponse
    init(_ response: HTTPResponse) { self.response = response }
}

extension String {
    init(format3 value: Double) {
        let scaled = (value * 1000).rounded() / 1000
        self = "\(scaled)"
    }
}
