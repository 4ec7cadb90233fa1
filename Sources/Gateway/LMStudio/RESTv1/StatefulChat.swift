import Glibc
import Shared
import Synchronization

/// `POST /api/v1/chat`: LM Studio's stateful chat. Each stored answer gets a `response_id`
/// (`resp_…`); a request naming one as `previous_response_id` continues that conversation — or
/// branches it, when an older id is named. Conversations are kept in memory, bounded by count and
/// bytes (the oldest go first), and do not survive a restart of the gateway.
struct StatefulChat: Sendable {
    let backend: LMStudioBackend
    let bodies: JSONBodyReader
    let store: ResponseStore

    static let shape = ErrorShape.lmstudioV1

    /// The request, read and checked: what the model is asked, and how.
    struct Turn: Sendable {
        var model: ResolvedModel
        var messages: [JSONValue]
        var systemPrompt: String?
        var sampling: JSONObject
        var parameters: JSONValue?
        var stream: Bool
        var store: Bool
    }

    func turn(_ doc: JSONValue) throws(APIError) -> Turn {
        guard let name = doc["model"]?.stringValue, !name.isEmpty else {
            throw APIError(.badRequest, "\"model\" is required", param: "model", code: "missing_required_parameter")
        }
        guard let model = backend.resolve(name) else {
            throw APIError(.notFound, "model \"\(name)\" not found; models here: \(backend.catalog.current.models.filter(LMStudioModelInfo.isOffered).map(\.id).joined(separator: ", "))",
                           param: "model", code: "model_not_found")
        }
        guard model.kind != .embedding else {
            throw APIError(.badRequest, "model \"\(model.id)\" is an embedding model and cannot chat", param: "model", code: "model_not_supported")
        }
        if let integrations = doc["integrations"]?.arrayValue, !integrations.isEmpty {
            throw APIError(HTTPStatus.notImplemented, "integrations (plugins and MCP servers) are not supported yet", param: "integrations",
                           code: "integrations_not_supported")
        }
        var previous: ResponseStore.Entry?
        if let id = doc["previous_response_id"], !id.isNull {
            guard let text = id.stringValue, text.hasPrefix("resp_") else {
                throw APIError(.badRequest, "previous_response_id must be a string starting with \"resp_\"", param: "previous_response_id")
            }
            guard let entry = store.entry(text) else {
                throw APIError(.badRequest, "no stored response \(text) (responses are kept in memory, the most recent \(store.maxEntries), and not across restarts)",
                               param: "previous_response_id", code: "response_not_found")
            }
            previous = entry
        }
        var messages = previous?.messages ?? []
        messages += try Self.input(doc["input"])
        let systemPrompt: String?
        switch doc["system_prompt"] {
        case nil, .null?: systemPrompt = previous?.systemPrompt
        case .string(let s)?: systemPrompt = s
        default: throw APIError(.badRequest, "system_prompt: expected a string", param: "system_prompt")
        }
        var sampling = JSONObject()
        for (key, upstream) in [("temperature", "temperature"), ("top_p", "top_p"), ("min_p", "min_p"), ("repeat_penalty", "repeat_penalty")] {
            guard let v = doc[key], !v.isNull else { continue }
            guard let d = v.doubleValue else { throw APIError(.badRequest, "\(key): expected a number", param: key) }
            sampling[upstream] = .double(d)
        }
        for (key, upstream) in [("top_k", "top_k"), ("max_output_tokens", "max_tokens")] {
            guard let v = doc[key], !v.isNull else { continue }
            guard let n = v.intValue else { throw APIError(.badRequest, "\(key): expected an integer", param: key) }
            sampling[upstream] = .int(n)
        }
        if let r = doc["reasoning"], !r.isNull {
            guard let level = r.stringValue, ["off", "low", "medium", "high", "on"].contains(level) else {
                throw APIError(.badRequest, "reasoning: expected \"off\", \"low\", \"medium\", \"high\" or \"on\"", param: "reasoning")
            }
            sampling["chat_template_kwargs"] = .object(JSONObject([("enable_thinking", .bool(level != "off"))]))
            if level != "off" && level != "on" { sampling["reasoning_effort"] = .string(level) }
        }
        let stream: Bool
        switch doc["stream"] {
        case nil, .null?: stream = false
        case .bool(let b)?: stream = b
        default: throw APIError(.badRequest, "stream: expected a boolean", param: "stream")
        }
        let store: Bool
        switch doc["store"] {
        case nil, .null?: store = true
        case .bool(let b)?: store = b
        default: throw APIError(.badRequest, "store: expected a boolean", param: "store")
        }
        let parameters = try LMStudioRESTv1.loadParameters(.object(JSONObject([("context_length", doc["context_length"] ?? .null)])))
        return Turn(model: model, messages: messages, systemPrompt: systemPrompt, sampling: sampling, parameters: parameters, stream: stream, store: store)
    }

    /// `input`: a string, or an array of `{type:"message"|"text", content}` items (user messages only:
    /// LM Studio does not take assistant messages as input). Images need a vision model, which
    /// LM Studio's chat would take as `{type:"image", data_url}`.
    static func input(_ value: JSONValue?) throws(APIError) -> [JSONValue] {
        func user(_ text: String) -> JSONValue { .object(JSONObject([("role", .string("user")), ("content", .string(text))])) }
        switch value {
        case .string(let s)?: return [user(s)]
        case .array(let items)?:
            guard !items.isEmpty else { throw APIError(.badRequest, "input must not be empty", param: "input") }
            var parts: [JSONValue] = []
            for (i, item) in items.enumerated() {
                switch item["type"]?.stringValue {
                case "message"?, "text"?:
                    guard let text = item["content"]?.stringValue ?? item["text"]?.stringValue else {
                        throw APIError(.badRequest, "input[\(i)].content: expected a string", param: "input[\(i)].content")
                    }
                    if let role = item["role"]?.stringValue, role != "user" {
                        throw APIError(.badRequest, "input[\(i)]: only user messages can be sent as input (the conversation's earlier turns come from previous_response_id)",
                                       param: "input[\(i)].role")
                    }
                    parts.append(.object(JSONObject([("type", .string("text")), ("text", .string(text))])))
                case "image"?:
                    guard let url = item["data_url"]?.stringValue, url.hasPrefix("data:") else {
                        throw APIError(.badRequest, "input[\(i)].data_url: expected a data: URL", param: "input[\(i)].data_url")
                    }
                    parts.append(.object(JSONObject([("type", .string("image_url")), ("image_url", .object(JSONObject([("url", .string(url))])))])))
                default:
                    throw APIError(.badRequest, "input[\(i)].type: expected \"message\" or \"image\"", param: "input[\(i)].type")
                }
            }
            if parts.allSatisfy({ $0["type"]?.stringValue == "text" }) {
                return [user(parts.compactMap { $0["text"]?.stringValue }.joined(separator: "\n"))]
            }
            return [.object(JSONObject([("role", .string("user")), ("content", .array(parts))]))]
        default:
            throw APIError(.badRequest, "\"input\" is required: a string or an array of messages", param: "input", code: "missing_required_parameter")
        }
    }

    func respond(_ request: HTTPRequest) async throws -> HTTPResponse {
        let t = try turn(try await bodies.read(request).0)
        if t.model.mmproj == nil, t.messages.contains(where: OllamaTranslation.hasImage) {
            throw APIError(.badRequest, "model \"\(t.model.id)\" cannot read images: it has no vision projector (mmproj)", param: "input")
        }
        var upstream = t.sampling
        upstream["messages"] = .array((t.systemPrompt.map { [.object(JSONObject([("role", .string("system")), ("content", .string($0))]))] } ?? []) + t.messages)
        let parameters = t.parameters ?? backend.requestParameters(t.model)
        let prediction = LMStudioPrediction(backend: backend, model: t.model, parameters: parameters, ttlSeconds: nil, raw: false,
                                            request: upstream, route: "/api/v1/chat", origin: RequestOrigin(request))
        let instanceID = backend.instances.loaded(model: t.model.id)?.identifier ?? t.model.id
        if t.stream { return streamed(t, prediction: prediction, instanceID: instanceID) }
        let outcome = try await prediction.run(waiting: { _ in }, delta: { _ in true })
        return OllamaAPI.json(result(t, outcome: outcome, instanceID: instanceID))
    }

    /// The response body (and, with `store`, the conversation kept under its new id).
    func result(_ t: Turn, outcome: LMStudioPrediction.Outcome, instanceID: String) -> JSONValue {
        let s = outcome.stream
        var output: [JSONValue] = []
        if !s.reasoning.isEmpty { output.append(.object(JSONObject([("type", .string("reasoning")), ("content", .string(s.reasoning))]))) }
        output.append(.object(JSONObject([("type", .string("message")), ("content", .string(s.content))])))
        var stats = JSONObject([("input_tokens", .int(s.usage.promptTokens)), ("total_output_tokens", .int(outcome.predictedTokens)),
                                ("reasoning_output_tokens", .int(s.reasoning.isEmpty ? 0 : max(0, outcome.predictedTokens - s.contentChunks))),
                                ("tokens_per_second", .double(outcome.tokensPerSecond ?? 0)),
                                ("time_to_first_token_seconds", .double(outcome.timeToFirstTokenSeconds ?? 0))])
        if outcome.loadMs > 0 { stats["model_load_time_seconds"] = .double(Double(outcome.loadMs) / 1000) }
        var o = JSONObject([("model_instance_id", .string(instanceID)), ("output", .array(output)), ("stats", .object(stats))])
        if t.store {
            let answer = JSONValue.object(JSONObject([("role", .string("assistant")), ("content", .string(s.content))]))
            o["response_id"] = .string(store.add(ResponseStore.Entry(messages: t.messages + [answer], systemPrompt: t.systemPrompt)))
        }
        return .object(o)
    }

    /// The SSE stream: `chat.start`, the load (when the model was not ready), prompt processing,
    /// reasoning and message deltas each between their start and end events, and `chat.end` with the
    /// whole result — after an `error` event too, as LM Studio does.
    func streamed(_ t: Turn, prediction: LMStudioPrediction, instanceID: String) -> HTTPResponse {
        let backend = self.backend
        let chat = self
        let needsLoad = !backend.relay.isReady(t.model.id)
        return HTTPResponse(status: .ok, headers: ["Content-Type": "text/event-stream", "Cache-Control": "no-cache"],
                            body: .stream(contentLength: nil) { writer in
            let out = ChatEventWriter(writer: writer, instanceID: instanceID)
            try await out.send("chat.start", [("model_instance_id", .string(instanceID))])
            if needsLoad { try await out.send("model_load.start", [("model_instance_id", .string(instanceID))]) }
            let expected = needsLoad ? await backend.expectedLoadSeconds(t.model) : 1
            var outcome = LMStudioPrediction.Outcome()
            do {
                outcome = try await prediction.run(waiting: { seconds in
                    try? await out.send("model_load.progress", [("model_instance_id", .string(instanceID)),
                                                                ("progress", .double(min(0.99, seconds / (seconds + expected / 2))))])
                }, acquired: { ms in
                    if needsLoad { try? await out.send("model_load.end", [("model_instance_id", .string(instanceID)), ("load_time_seconds", .double(Double(ms) / 1000))]) }
                    try? await out.enter(.prompt)
                }, delta: { delta in (try? await out.send(delta)) != nil })
                try await out.enter(.done)
            } catch let error as APIError {
                try await out.enter(.done)
                try await out.send("error", [("error", .object(JSONObject([("type", .string(ErrorShape.lmstudioType(error.status))), ("message", .string(error.message))])))])
                outcome.endedAt = monotonicNanos()
            }
            try await out.send("chat.end", [("result", chat.result(t, outcome: outcome, instanceID: instanceID))])
        })
    }
}

/// Writes a v1 chat stream's named SSE events (their data carries the same `type`), framing each
/// kind of delta between its start and end events.
final class ChatEventWriter: @unchecked Sendable {
    // @unchecked Sendable: used by the one response body closure that owns `writer`, on its task,
    // one call at a time.
    enum Phase: Sendable { case waiting, prompt, reasoning, message, done }

    let writer: any HTTPBodyWriter
    let instanceID: String
    private(set) var phase = Phase.waiting

    init(writer: any HTTPBodyWriter, instanceID: String) {
        self.writer = writer
        self.instanceID = instanceID
    }

    func send(_ type: String, _ fields: [(String, JSONValue)] = []) async throws {
        let data = JSONValue.object(JSONObject([("type", .string(type))] + fields))
        try await writer.write(SSEEvent(event: type, data: JSONWriter.write(data, pretty: false)).encoded())
    }

    /// One piece of the answer, after the events that close the previous kind and open its own.
    func send(_ delta: CompletionStream.Delta) async throws {
        switch delta {
        case .promptProgress(let processed, _, let total):
            if phase == .prompt && total > 0 { try await send("prompt_processing.progress", [("progress", .double(Double(processed) / Double(total)))]) }
        case .reasoning(let text):
            try await enter(.reasoning)
            try await send("reasoning.delta", [("content", .string(text))])
        case .content(let text):
            try await enter(.message)
            try await send("message.delta", [("content", .string(text))])
        case .toolCallStarted, .toolCallArguments:
            break
        }
    }

    /// Moves to `next`: the current phase's end event, then `next`'s start event.
    func enter(_ next: Phase) async throws {
        guard phase != next else { return }
        switch phase {
        case .prompt: try await send("prompt_processing.end")
        case .reasoning: try await send("reasoning.end")
        case .message: try await send("message.end")
        case .waiting, .done: break
        }
        phase = next
        switch next {
        case .prompt: try await send("prompt_processing.start")
        case .reasoning: try await send("reasoning.start")
        case .message: try await send("message.start")
        case .waiting, .done: break
        }
    }
}

/// The conversations of the stateful chat, in memory: at most `maxEntries`, and at most `maxBytes`
/// of message text, the oldest dropped first.
final class ResponseStore: Sendable {
    struct Entry: Sendable {
        var messages: [JSONValue]
        var systemPrompt: String?
        var bytes: Int { messages.reduce(systemPrompt?.utf8.count ?? 0) { $0 + JSONWriter.write($1, pretty: false).utf8.count } }
    }

    let maxEntries: Int
    let maxBytes: Int
    private let state = Mutex<(entries: [String: Entry], order: [String], bytes: Int)>(([:], [], 0))

    init(maxEntries: Int = 1000, maxBytes: Int = 64 << 20) {
        self.maxEntries = maxEntries
        self.maxBytes = maxBytes
    }

    func entry(_ id: String) -> Entry? { state.withLock { $0.entries[id] } }

    var count: Int { state.withLock { $0.entries.count } }

    /// Keeps a conversation; returns its new id.
    func add(_ entry: Entry) -> String {
        let id = "resp_" + Self.randomHex(24)
        let size = entry.bytes
        state.withLock { s in
            s.entries[id] = entry
            s.order.append(id)
            s.bytes += size
            while s.order.count > maxEntries || (s.bytes > maxBytes && s.order.count > 1) {
                let oldest = s.order.removeFirst()
                if let gone = s.entries.removeValue(forKey: oldest) { s.bytes -= gone.bytes }
            }
        }
        return id
    }

    static func randomHex(_ bytes: Int) -> String {
        var buffer = [UInt8](repeating: 0, count: bytes)
        var generator = SystemRandomNumberGenerator()
        for i in 0..<bytes { buffer[i] = UInt8.random(in: 0...255, using: &generator) }
        return buffer.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined()
    }
}
