import Glibc
import Shared

/// Shows a streamed request's wait for its model's load to the client, in its API's own stream shape
/// (`proxies.<surface>.stream_loading_progress`, off by default, as llama-swap's `sendLoadingState`):
/// OpenAI chat chunks with `reasoning_content` deltas, Ollama lines with `thinking`. The response head
/// is sent at once; the progress ends with a line saying the model is loaded, then the real answer's
/// stream follows unchanged. An error after the head (the load failed) is written in the stream's
/// error shape. Only used when the model is not ready, so a loaded model's answers keep their status.
struct LoadProgress: Sendable {
    enum Surface: Sendable, Equatable {
        case openAIChat
        case ollama(chat: Bool)
    }

    let surface: Surface
    /// The model as the client named it.
    let name: String
    /// What the load reports now (an out-of-memory ladder step), written into the stream when it changes.
    var note: @Sendable () -> String? = { nil }

    var errorShape: ErrorShape { surface == .openAIChat ? .openAI : .ollama }
    var contentType: String { surface == .openAIChat ? "text/event-stream" : "application/x-ndjson" }

    /// One progress piece in the surface's stream shape.
    func chunk(_ text: String) -> [UInt8] {
        switch surface {
        case .openAIChat:
            let delta = JSONObject([("role", .string("assistant")), ("reasoning_content", .string(text))])
            let choice = JSONObject([("index", .int(0)), ("delta", .object(delta)), ("finish_reason", .null)])
            let event = JSONObject([("id", .string("chatcmpl-load")), ("object", .string("chat.completion.chunk")),
                                    ("created", .int(Int(time(nil)))), ("model", .string(name)),
                                    ("choices", .array([.object(choice)]))])
            return Array("data: ".utf8) + JSONWriter.bytes(.object(event), pretty: false) + Array("\n\n".utf8)
        case .ollama(let chat):
            var line = JSONObject([("model", .string(name)), ("created_at", .string(OllamaAPI.now()))])
            if chat {
                line["message"] = .object(JSONObject([("role", .string("assistant")), ("content", .string("")), ("thinking", .string(text))]))
            } else {
                line["response"] = .string("")
                line["thinking"] = .string(text)
            }
            line["done"] = .bool(false)
            return JSONWriter.bytes(.object(line), pretty: false) + [10]
        }
    }

    /// How often the wait is reported.
    static let interval = 1.0

    /// Answers at once with a stream that reports the load every `interval` seconds until `answer`
    /// (the request's ordinary handling: acquire, call, relay) produces its response, then plays that
    /// response's body into the same stream. A client that leaves cancels `answer`, and so its acquire.
    func response(loop: EventLoop = .shared, _ answer: @escaping @Sendable () async throws -> HTTPResponse) -> HTTPResponse {
        let progress = self
        return HTTPResponse(status: .ok, headers: ["Content-Type": contentType, "Cache-Control": "no-cache"],
                            body: .stream(contentLength: nil) { writer in
            enum Event: Sendable { case tick, answer(Result<HTTPResponse, any Error>) }
            let started = monotonicNanos()
            var lastNote: String? = nil
            func writeNote() async throws {
                guard let note = progress.note(), note != lastNote else { return }
                lastNote = note
                try await writer.write(progress.chunk("\(progress.name): \(note)\n"))
            }
            try await writer.write(progress.chunk("Loading \(progress.name)…\n"))
            let outcome: Result<HTTPResponse, any Error> = try await withThrowingTaskGroup(of: Event.self) { group in
                group.addTask {
                    do { return .answer(.success(try await answer())) } catch { return .answer(.failure(error)) }
                }
                group.addTask { try await loop.sleep(seconds: Self.interval); return .tick }
                defer { group.cancelAll() }
                while let event = try await group.next() {
                    switch event {
                    case .answer(let result):
                        return result
                    case .tick:
                        let seconds = Int(Double(monotonicNanos() - started) / 1e9)
                        try await writeNote()
                        try await writer.write(progress.chunk("Still loading \(progress.name) (\(seconds) s)…\n"))
                        group.addTask { try await loop.sleep(seconds: Self.interval); return .tick }
                    }
                }
                throw CancellationError()
            }
            // A step taken since the last tick is still told, before the outcome.
            try await writeNote()
            let response: HTTPResponse
            switch outcome {
            case .success(let r): response = r
            case .failure(let error as APIError): return try await writer.write(progress.errorShape.streamError(error.message))
            case .failure(let error): return try await writer.write(progress.errorShape.streamError("\(error)"))
            }
            let ms = Int(Double(monotonicNanos() - started) / 1e6)
            guard response.status.code < 400 else {
                let body = try await Self.collect(response)
                return try await writer.write(progress.errorShape.streamError(RunnerRelay.errorMessage(body)))
            }
            try await writer.write(progress.chunk("\(progress.name) is loaded (\(ms) ms).\n\n"))
            switch response.body {
            case .bytes(let bytes): try await writer.write(bytes)
            case .stream(_, let producer): try await producer(writer)
            case .upgrade: return try await writer.write(progress.errorShape.streamError("the answer switched protocols"))
            }
        })
    }

    /// A response's whole body (an error answer: small).
    static func collect(_ response: HTTPResponse) async throws -> [UInt8] {
        switch response.body {
        case .bytes(let bytes): return bytes
        case .stream(_, let producer):
            let sink = CollectingWriter()
            try await producer(sink)
            return sink.bytes
        case .upgrade:
            return []
        }
    }
}

/// Keeps what a response body producer writes (up to 64 KiB), for an error answered inside a stream.
final class CollectingWriter: HTTPBodyWriter {
    var bytes: [UInt8] = []
    func write(_ piece: [UInt8]) async throws {
        bytes += piece.prefix(max(0, 65536 - bytes.count))
    }
}
