import Shared

/// llama-server's streamed answer read into what every translating surface needs (Ollama's NDJSON,
/// LM Studio's prediction fragments and REST v1 events): text and reasoning deltas as they come, tool
/// calls assembled from their deltas, why it stopped, prompt progress, and the token counts and
/// timings of the final chunk. Reads both stream shapes llama-server sends: OpenAI chat chunks
/// (`/v1/chat/completions`) and its native completion chunks (`/completion`: `content`, `stop`,
/// `stop_type`), used for raw prompts.
struct CompletionStream: Sendable {
    /// One piece of the answer, in order.
    enum Delta: Sendable, Equatable {
        case content(String)
        case reasoning(String)
        /// A tool call's first delta (index, id, name as far as known).
        case toolCallStarted(index: Int, id: String, name: String)
        /// More of a tool call's JSON arguments.
        case toolCallArguments(index: Int, String)
        /// Prompt processing (llama-server's `prompt_progress` with `return_progress`): tokens done,
        /// of which reused from the cache, and the total.
        case promptProgress(processed: Int, cached: Int, total: Int)
    }

    /// Why generation ended, in llama-server's own terms.
    enum Stop: Sendable, Equatable {
        case endOfSequence
        case stopString
        case lengthLimit
        case toolCalls
    }

    /// A tool call assembled from its deltas.
    struct ToolCall: Sendable, Equatable {
        var id: String
        var name: String
        var arguments: String
    }

    private var parser = SSEParser()
    private(set) var content = ""
    private(set) var reasoning = ""
    private(set) var toolCalls: [Int: ToolCall] = [:]
    /// The final chunk's reason (nil until one says).
    private(set) var stop: Stop?
    /// llama-server's `timings` of the final chunk.
    private(set) var timings: JSONValue?
    /// Chunks that carried answer text (one per generated token as llama-server streams).
    private(set) var contentChunks = 0
    private var scanner = UsageScanner()

    init() {}

    /// Token counts, read from the same bytes (OpenAI `usage` or llama-server's `timings`).
    var usage: Usage { scanner.usage }

    /// The tool calls in index order.
    var orderedToolCalls: [(index: Int, call: ToolCall)] { toolCalls.keys.sorted().map { ($0, toolCalls[$0]!) } }

    /// Consumes upstream bytes; returns the deltas they complete.
    mutating func feed(_ bytes: [UInt8]) -> [Delta] {
        var out: [Delta] = []
        scanner.feed(bytes)
        for item in parser.feed(bytes) {
            guard case .event(let event) = item, !event.data.hasPrefix("[DONE]"), let chunk = try? JSONParser.parse(event.data) else { continue }
            if let t = chunk["timings"] { timings = t }
            if let p = chunk["prompt_progress"] {
                out.append(.promptProgress(processed: p["processed"]?.intValue ?? 0, cached: p["cache"]?.intValue ?? 0, total: p["total"]?.intValue ?? 0))
            }
            // The native /completion stream: {"content", "stop", "stop_type"}.
            if chunk["choices"] == nil, let text = chunk["content"]?.stringValue {
                if chunk["stop"]?.boolValue == true {
                    switch chunk["stop_type"]?.stringValue {
                    case "limit": stop = .lengthLimit
                    case "word": stop = .stopString
                    default: stop = .endOfSequence
                    }
                }
                if !text.isEmpty {
                    content += text
                    contentChunks += 1
                    out.append(.content(text))
                }
                continue
            }
            guard let choice = chunk["choices"]?.arrayValue?.first else { continue }
            let delta = choice["delta"] ?? .null
            if let r = delta["reasoning_content"]?.stringValue, !r.isEmpty {
                reasoning += r
                out.append(.reasoning(r))
            }
            // A chat chunk's delta, or a text completion's `text` (/v1/completions: a peer's raw generate).
            if let text = delta["content"]?.stringValue ?? choice["text"]?.stringValue, !text.isEmpty {
                content += text
                contentChunks += 1
                out.append(.content(text))
            }
            for call in delta["tool_calls"]?.arrayValue ?? [] {
                let i = call["index"]?.intValue ?? 0
                let isNew = toolCalls[i] == nil
                var entry = toolCalls[i] ?? ToolCall(id: "", name: "", arguments: "")
                if let id = call["id"]?.stringValue { entry.id += id }
                if let n = call["function"]?["name"]?.stringValue { entry.name += n }
                let args = call["function"]?["arguments"]?.stringValue ?? ""
                entry.arguments += args
                toolCalls[i] = entry
                if isNew { out.append(.toolCallStarted(index: i, id: entry.id, name: entry.name)) }
                if !args.isEmpty { out.append(.toolCallArguments(index: i, args)) }
            }
            switch choice["finish_reason"]?.stringValue {
            case "length"?: stop = .lengthLimit
            case "tool_calls"?: stop = .toolCalls
            case let reason? where !reason.isEmpty: stop = .endOfSequence
            default: break
            }
        }
        return out
    }

    /// Milliseconds llama-server spent on the prompt and on generation, and its generation speed.
    var promptMs: Double { timings?["prompt_ms"]?.doubleValue ?? 0 }
    var predictedMs: Double { timings?["predicted_ms"]?.doubleValue ?? 0 }
    var tokensPerSecond: Double? { timings?["predicted_per_second"]?.doubleValue }
}
