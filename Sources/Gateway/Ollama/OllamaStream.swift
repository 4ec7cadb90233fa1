import Glibc
import Shared

/// Turns llama-server's chat-completion SSE into Ollama NDJSON lines, and the final `done` line with
/// durations from `timings` (Ollama reports nanoseconds; llama-server milliseconds).
struct OllamaStream: Sendable {
    let name: String
    let chat: Bool
    let loadNanos: Int
    let start: UInt64
    var parser = SSEParser()
    var content = ""
    var thinking = ""
    var toolCalls: [Int: (id: String, name: String, arguments: String)] = [:]
    var doneReason = "stop"
    var timings: JSONValue?
    /// The token counts, read from the same bytes the `done` line reports them from.
    var scanner = UsageScanner()
    var usage: Usage { scanner.usage }

    init(name: String, chat: Bool, loadNanos: Int, start: UInt64) {
        self.name = name
        self.chat = chat
        self.loadNanos = loadNanos
        self.start = start
    }

    func line(_ fields: [(String, JSONValue)]) -> [UInt8] {
        var o = JSONObject([("model", .string(name)), ("created_at", .string(OllamaAPI.now()))])
        for (k, v) in fields { o[k] = v }
        return JSONWriter.bytes(.object(o), pretty: false) + [10]
    }

    func message(_ text: String, thinking: String?) -> [(String, JSONValue)] {
        if chat {
            var m = JSONObject([("role", .string("assistant")), ("content", .string(text))])
            if let thinking, !thinking.isEmpty { m["thinking"] = .string(thinking) }
            return [("message", .object(m))]
        }
        var fields: [(String, JSONValue)] = [("response", .string(text))]
        if let thinking, !thinking.isEmpty { fields.append(("thinking", .string(thinking))) }
        return fields
    }

    /// Consumes upstream bytes; returns the NDJSON lines they complete (for streaming).
    mutating func feed(_ bytes: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        scanner.feed(bytes)
        for item in parser.feed(bytes) {
            guard case .event(let event) = item, !event.data.hasPrefix("[DONE]"), let chunk = try? JSONParser.parse(event.data) else { continue }
            if let t = chunk["timings"] { timings = t }
            // llama-server's native /completion stream (raw generate): {"content", "stop", "stop_type"}.
            if chunk["choices"] == nil, let text = chunk["content"]?.stringValue {
                if chunk["stop"]?.boolValue == true { doneReason = chunk["stop_type"]?.stringValue == "limit" ? "length" : "stop" }
                content += text
                if !text.isEmpty { out += line(message(text, thinking: nil) + [("done", .bool(false))]) }
                continue
            }
            guard let choice = chunk["choices"]?.arrayValue?.first else { continue }
            let delta = choice["delta"] ?? .null
            let text = delta["content"]?.stringValue ?? ""
            let reasoning = delta["reasoning_content"]?.stringValue ?? ""
            for call in delta["tool_calls"]?.arrayValue ?? [] {
                let i = call["index"]?.intValue ?? 0
                var entry = toolCalls[i] ?? ("", "", "")
                if let id = call["id"]?.stringValue { entry.id += id }
                if let n = call["function"]?["name"]?.stringValue { entry.name += n }
                if let a = call["function"]?["arguments"]?.stringValue { entry.arguments += a }
                toolCalls[i] = entry
            }
            if let reason = choice["finish_reason"]?.stringValue { doneReason = reason == "length" ? "length" : "stop" }
            content += text
            thinking += reasoning
            if !text.isEmpty || !reasoning.isEmpty {
                out += line(message(text, thinking: reasoning) + [("done", .bool(false))])
            }
        }
        return out
    }

    /// The final line (streaming: tool calls, then `done`; non-streaming: the whole answer).
    func finish(aggregate: Bool) -> [UInt8]? {
        var out: [UInt8] = []
        let calls: [JSONValue] = toolCalls.keys.sorted().map { i in
            let c = toolCalls[i]!
            let args = (try? JSONParser.parse(c.arguments)) ?? .object(JSONObject())
            return .object(JSONObject([("id", .string(c.id.isEmpty ? "call_\(i)" : c.id)),
                                       ("function", .object(JSONObject([("index", .int(i)), ("name", .string(c.name)), ("arguments", args)])))]))
        }
        if !aggregate && !calls.isEmpty && chat {
            out += line([("message", .object(JSONObject([("role", .string("assistant")), ("content", .string("")), ("tool_calls", .array(calls))]))),
                         ("done", .bool(false))])
        }
        var fields = aggregate ? message(content, thinking: thinking) : message("", thinking: nil)
        if aggregate && !calls.isEmpty && chat, case .object(var m) = fields[0].1 {
            m["tool_calls"] = .array(calls)
            fields[0] = ("message", .object(m))
        }
        let t = timings ?? .null
        let promptN = usage.promptTokens
        let evalN = usage.completionTokens
        fields += [("done", .bool(true)), ("done_reason", .string(doneReason)),
                   ("total_duration", .int(Int(monotonicNanos() &- start))), ("load_duration", .int(loadNanos)),
                   ("prompt_eval_count", .int(promptN)), ("prompt_eval_duration", .int(Int((t["prompt_ms"]?.doubleValue ?? 0) * 1e6))),
                   ("eval_count", .int(evalN)), ("eval_duration", .int(Int((t["predicted_ms"]?.doubleValue ?? 0) * 1e6)))]
        out += line(fields)
        return out
    }
}
