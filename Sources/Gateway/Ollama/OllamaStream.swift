import Glibc
import Shared

/// Turns llama-server's chat-completion SSE into Ollama NDJSON lines, and the final `done` line with
/// durations from `timings` (Ollama reports nanoseconds; llama-server milliseconds).
struct OllamaStream: Sendable {
    let name: String
    let chat: Bool
    let loadNanos: Int
    let start: UInt64
    /// The answer as it streams (text, thinking, tool calls, stop, counts).
    var stream = CompletionStream()
    /// The token counts, read from the same bytes the `done` line reports them from.
    var usage: Usage { stream.usage }

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
        for delta in stream.feed(bytes) {
            switch delta {
            case .content(let text): out += line(message(text, thinking: nil) + [("done", .bool(false))])
            case .reasoning(let text): out += line(message("", thinking: text) + [("done", .bool(false))])
            case .toolCallStarted, .toolCallArguments, .promptProgress: break
            }
        }
        return out
    }

    /// The final line (streaming: tool calls, then `done`; non-streaming: the whole answer).
    func finish(aggregate: Bool) -> [UInt8]? {
        var out: [UInt8] = []
        let calls: [JSONValue] = stream.orderedToolCalls.map { i, c in
            let args = (try? JSONParser.parse(c.arguments)) ?? .object(JSONObject())
            return .object(JSONObject([("id", .string(c.id.isEmpty ? "call_\(i)" : c.id)),
                                       ("function", .object(JSONObject([("index", .int(i)), ("name", .string(c.name)), ("arguments", args)])))]))
        }
        if !aggregate && !calls.isEmpty && chat {
            out += line([("message", .object(JSONObject([("role", .string("assistant")), ("content", .string("")), ("tool_calls", .array(calls))]))),
                         ("done", .bool(false))])
        }
        var fields = aggregate ? message(stream.content, thinking: stream.reasoning) : message("", thinking: nil)
        if aggregate && !calls.isEmpty && chat, case .object(var m) = fields[0].1 {
            m["tool_calls"] = .array(calls)
            fields[0] = ("message", .object(m))
        }
        let t = stream.timings ?? .null
        let doneReason = stream.stop == .lengthLimit ? "length" : "stop"
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
