import Shared

/// One streamed prediction for LM Studio's clients (the SDK's `predict` channel, REST v1's chat): the
/// runner acquired as for every surface, the request streamed from llama-server and read as deltas,
/// and a cancellation honoured as LM Studio does — generation stops (the upstream connection is
/// closed, which frees the runner's slot), and the prediction still ends with what it produced and
/// its stats (`userStopped`), not with an error.
struct LMStudioPrediction: Sendable {
    let backend: LMStudioBackend
    let model: ResolvedModel
    /// The instance's load settings (see `LMStudioInstances.Loaded.parameters`).
    let parameters: JSONValue?
    let ttlSeconds: Double?
    /// A raw prompt (`/completion`) rather than a chat (`/v1/chat/completions`).
    let raw: Bool
    /// The llama-server request fields (messages or prompt, sampling); streaming is added here.
    let request: JSONObject
    /// The metrics route label.
    let route: String
    /// The HTTP request it answers (REST v1), whose client leaving cancels a wait for the runner;
    /// nil on a websocket, where the socket's end cancels the prediction's task instead.
    var origin: RequestOrigin? = nil

    /// How it went.
    struct Outcome: Sendable {
        var stream = CompletionStream()
        /// Stopped by the client (or its connection ended) before the runner finished.
        var cancelled = false
        var loadMs = 0
        /// When the request went to the runner, and when its first token came back (monotonic ns).
        var sentAt: UInt64 = 0
        var firstTokenAt: UInt64?
        var endedAt: UInt64 = 0

        var timeToFirstTokenSeconds: Double? { firstTokenAt.map { Double($0 &- sentAt) / 1e9 } }
        /// Generated tokens: llama-server's count, or the streamed pieces when it sent none (cancelled).
        var predictedTokens: Int { max(stream.usage.completionTokens, stream.contentChunks) }
        var tokensPerSecond: Double? {
            if !cancelled, let tps = stream.tokensPerSecond { return tps }
            guard let first = firstTokenAt, endedAt > first, predictedTokens > 1 else { return nil }
            return Double(predictedTokens - 1) / (Double(endedAt - first) / 1e9)
        }
        /// Seconds from the request to the runner until its last token.
        var totalSeconds: Double { Double(endedAt &- sentAt) / 1e9 }
    }

    /// Runs the prediction. `waiting` is called every second while the runner is being acquired (a
    /// load), with the seconds waited; `acquired` once it is, with the load's milliseconds (0 when
    /// it was ready); `delta` with each piece of the answer, in order — it returns false once its
    /// client is gone, which stops generation. Task cancellation stops it as the client's cancel
    /// does (the outcome says `cancelled`).
    func run(waiting: @escaping @Sendable (Double) async -> Void, acquired: (Int) async -> Void = { _ in },
             delta: (CompletionStream.Delta) async -> Bool) async throws(APIError) -> Outcome {
        var body = request
        body["stream"] = .bool(true)
        body["cache_prompt"] = .bool(true)
        body["return_progress"] = .bool(true)
        let bytes = JSONWriter.bytes(.object(body), pretty: false)
        let relay = backend.relay
        let (model, parameters, ttl, path) = (self.model, self.parameters, ttlSeconds, raw ? "/completion" : "/v1/chat/completions")
        let origin = self.origin ?? RequestOrigin(receivedAt: monotonicNanos())
        var outcome = Outcome()
        let call: RunnerRelay.Call
        do {
            call = try await LMStudioBackend.whileWaiting(loop: backend.loop, every: 1, {
                await waiting(Double(monotonicNanos() &- origin.receivedAt) / 1e9)
            }) {
                try await relay.call(origin, model: model, path: path, body: bytes, keepAlive: ttl, parameters: parameters,
                                     accept: "text/event-stream")
            }
        } catch let error as APIError where error.status.code != 499 {
            throw error
        } catch {
            // Cancelled while waiting for the runner: nothing was generated.
            outcome.cancelled = true
            outcome.endedAt = monotonicNanos()
            outcome.sentAt = outcome.endedAt
            return outcome
        }
        outcome.loadMs = call.grant.loadDurationMs
        await acquired(outcome.loadMs)
        outcome.sentAt = monotonicNanos()
        if call.upstream.status.code != 200 {
            let text = (try? await call.upstream.collect(upTo: 1 << 20)) ?? []
            call.lease.release()
            let message = RunnerRelay.errorMessage(text)
            relay.record(call, api: "lmstudio", route: route, status: call.upstream.status.code, firstByteAt: nil, usage: Usage(),
                         clientGone: false, error: message)
            throw APIError(call.upstream.status, message)
        }
        let upstream = call.upstream
        var failure: String?
        var clientGone = false
        reading: while true {
            let piece: [UInt8]?
            do {
                piece = try await upstream.read()
            } catch is CancellationError {
                outcome.cancelled = true
                break
            } catch {
                failure = RunnerRelay.midStreamFailure(model.id, error)
                break
            }
            guard let piece else { break }
            for d in outcome.stream.feed(piece) {
                if outcome.firstTokenAt == nil, case .content = d { outcome.firstTokenAt = monotonicNanos() }
                if outcome.firstTokenAt == nil, case .reasoning = d { outcome.firstTokenAt = monotonicNanos() }
                if !(await delta(d)) {
                    clientGone = true
                    outcome.cancelled = true
                    break reading
                }
            }
            if Task.isCancelled {
                outcome.cancelled = true
                break
            }
        }
        if outcome.cancelled { upstream.abandon() }
        outcome.endedAt = monotonicNanos()
        let usage = outcome.stream.usage
        call.lease.release(usage: usage)
        relay.record(call, api: "lmstudio", route: route, status: 200, firstByteAt: outcome.firstTokenAt, usage: usage,
                     clientGone: clientGone || outcome.cancelled, error: failure)
        if let failure { throw APIError(.badGateway, failure) }
        return outcome
    }
}
