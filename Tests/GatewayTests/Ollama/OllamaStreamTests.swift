import Shared
import Testing
@testable import Gateway

/// llama-server's chat-completion SSE → Ollama NDJSON, from raw bytes, no sockets.
@Suite struct OllamaStreamTests {
    static func event(_ json: String) -> String { "data: \(json)\n\n" }

    static let stream = event(#"{"choices":[{"index":0,"delta":{"role":"assistant","content":"Hel"}}]}"#)
        + event(#"{"choices":[{"index":0,"delta":{"content":"lo"}}]}"#)
        + event(#"{"choices":[{"index":0,"delta":{"reasoning_content":"hmm"}}]}"#)
        + event(#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_a","function":{"name":"get_","arguments":"{\"ci"}}]}}]}"#)
        + event(#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"name":"weather","arguments":"ty\":\"Paris\"}"}}]}}]}"#)
        + event(#"{"choices":[{"index":0,"finish_reason":"tool_calls","delta":{}}],"timings":{"prompt_n":20,"cache_n":4,"prompt_ms":12.5,"predicted_n":7,"predicted_ms":30.25}}"#)
        + "data: [DONE]\n\n"

    static func lines(_ bytes: [UInt8]) -> [JSONValue] {
        String(decoding: bytes, as: UTF8.self).split(separator: "\n").map { try! JSONParser.parse(Array($0.utf8)).0 }
    }

    @Test func contentThinkingToolCallsAndTheDoneLine() {
        var t = OllamaStream(name: "smol", chat: true, loadNanos: 5_000_000, start: monotonicNanos())
        let streamed = Self.lines(t.feed(Array(Self.stream.utf8)))
        #expect(streamed.map { $0["message"]?["content"]?.stringValue } == ["Hel", "lo", ""])
        #expect(streamed[2]["message"]?["thinking"]?.stringValue == "hmm")
        #expect(streamed.allSatisfy { $0["done"] == .bool(false) && $0["model"] == .string("smol") })
        let final = Self.lines(t.finish(aggregate: false)!)
        #expect(final.count == 2, "the accumulated tool call, then done")
        let call = final[0]["message"]?["tool_calls"]?.arrayValue?.first
        #expect(call?["function"]?["name"] == .string("get_weather"))
        #expect(call?["function"]?["arguments"] == .object(JSONObject([("city", .string("Paris"))])), "arguments are an object")
        #expect(call?["id"] == .string("call_a"))
        let done = final[1]
        #expect(done["done"] == .bool(true) && done["done_reason"] == .string("stop"))
        #expect(done["prompt_eval_count"] == .int(24), "evaluated + cached")
        #expect(done["eval_count"] == .int(7))
        #expect(done["prompt_eval_duration"] == .int(12_500_000) && done["eval_duration"] == .int(30_250_000), "ms → ns")
        #expect(done["load_duration"] == .int(5_000_000))
        #expect((done["total_duration"]?.intValue ?? 0) > 0)
        #expect(t.usage == Usage(promptTokens: 24, completionTokens: 7, cachedTokens: 4))
    }

    @Test func everySplitOfTheBytesGivesTheSameLines() {
        let bytes = Array(Self.stream.utf8)
        var whole = OllamaStream(name: "smol", chat: true, loadNanos: 0, start: 0)
        let expected = whole.feed(bytes)
        for cut in stride(from: 1, to: bytes.count, by: 7) {
            var t = OllamaStream(name: "smol", chat: true, loadNanos: 0, start: 0)
            let out = t.feed(Array(bytes[..<cut])) + t.feed(Array(bytes[cut...]))
            #expect(Self.lines(out).map { $0["message"] } == Self.lines(expected).map { $0["message"] }, "cut at \(cut)")
        }
    }

    @Test func aStreamCutShortEmitsNoHalfLineAndStillEndsWithDone() {
        var t = OllamaStream(name: "smol", chat: false, loadNanos: 0, start: monotonicNanos())
        let first = Self.event(#"{"choices":[{"index":0,"delta":{"content":"Par"}}]}"#)
        let out = t.feed(Array((first + #"data: {"choices":[{"index":0,"del"#).utf8))
        #expect(Self.lines(out).map { $0["response"]?.stringValue } == ["Par"], "the unfinished event is held back")
        let done = Self.lines(t.finish(aggregate: false)!)
        #expect(done.last?["done"] == .bool(true) && done.last?["eval_count"] == .int(0), "no timings arrived")
    }

    @Test func aggregatedAnswersCarryTheWholeText() {
        var t = OllamaStream(name: "smol", chat: false, loadNanos: 0, start: monotonicNanos())
        #expect(t.feed(Array(Self.stream.utf8)).isEmpty == false)
        let whole = Self.lines(t.finish(aggregate: true)!)
        #expect(whole.count == 1 && whole[0]["response"] == .string("Hello") && whole[0]["thinking"] == .string("hmm"))
    }

    @Test func rawCompletionStreamsAreTranslatedToo() {
        var t = OllamaStream(name: "smol", chat: false, loadNanos: 0, start: monotonicNanos())
        let out = t.feed(Array((Self.event(#"{"content":"Hi","stop":false}"#) + Self.event(#"{"content":"","stop":true,"stop_type":"limit"}"#)).utf8))
        #expect(Self.lines(out).map { $0["response"]?.stringValue } == ["Hi"])
        #expect(Self.lines(t.finish(aggregate: false)!).last?["done_reason"] == .string("length"))
    }
}

/// Ollama request fields → llama-server's.
@Suite struct OllamaTranslationTests {
    @Test(arguments: [("5m", 300.0), ("1h30m", 5400.0), ("-1m", -60.0), ("300ms", 0.3), ("1.5s", 1.5), ("42", 42.0), ("0", 0.0), ("2h3m4s", 7384.0)])
    func keepAliveDurations(text: String, seconds: Double) throws {
        let got = try OllamaTranslation.keepAlive(.string(text)).get()
        #expect(got.map { abs($0 - seconds) < 1e-9 } == true, "\(text) → \(String(describing: got))")
    }

    @Test func keepAliveNumbersNullAndNonsense() throws {
        #expect(try OllamaTranslation.keepAlive(.int(-1)).get() == -1)
        #expect(try OllamaTranslation.keepAlive(.double(2.5)).get() == 2.5)
        #expect(try OllamaTranslation.keepAlive(nil).get() == nil)
        #expect(try OllamaTranslation.keepAlive(.null).get() == nil)
        for bad: JSONValue in [.string("5 minutes"), .string("m5"), .string("5d"), .bool(true)] {
            #expect(throws: BadRequest.self) { try OllamaTranslation.keepAlive(bad).get() }
        }
    }

    @Test func optionsSplitIntoSamplingAndLoadTimeParameters() throws {
        let options = try JSONParser.parse(Array(#"{"temperature":0.2,"num_predict":16,"top_k":40,"seed":7,"stop":["\n"],"num_ctx":1024,"num_gpu":-1,"num_thread":4,"use_mmap":false,"unknown":1}"#.utf8)).0
        let (request, load) = try OllamaTranslation.options(options).get()
        #expect(request["temperature"] == .double(0.2) && request["max_tokens"] == .int(16) && request["top_k"] == .int(40) && request["seed"] == .int(7))
        #expect(request["stop"] == .array([.string("\n")]))
        #expect(load["ctx_size"] == .int(1024) && load["threads"] == .int(4) && load["no_mmap"] == .bool(true))
        #expect(load["n_gpu_layers"] == nil, "num_gpu -1 means the default")
        #expect(request["unknown"] == nil && load["unknown"] == nil, "unknown options are ignored, as Ollama does")
        #expect(throws: BadRequest.self) { try OllamaTranslation.options(.object(JSONObject([("temperature", .string("hot"))]))).get() }
        #expect(throws: BadRequest.self) { try OllamaTranslation.options(.object(JSONObject([("num_ctx", .double(1.5))]))).get() }
        #expect(throws: BadRequest.self) { try OllamaTranslation.options(.string("fast")).get() }
    }

    @Test func messagesWithImagesAndToolCalls() throws {
        let doc = try JSONParser.parse(Array(#"[{"role":"user","content":"look","images":["iVBORw0KGgo="]},{"role":"assistant","content":"","tool_calls":[{"function":{"name":"f","arguments":{"a":1}}}]},{"role":"tool","content":"42","tool_name":"f"}]"#.utf8)).0
        let out = try OllamaTranslation.messages(doc).get()
        #expect(out[0]["content"]?.arrayValue?[1]["image_url"]?["url"] == .string("data:image/png;base64,iVBORw0KGgo="))
        #expect(OllamaTranslation.hasImage(out[0]) && !OllamaTranslation.hasImage(out[1]))
        #expect(out[1]["tool_calls"]?.arrayValue?.first?["function"]?["arguments"] == .string(#"{"a":1}"#), "arguments go up as a string")
        #expect(out[2]["name"] == .string("f"))
        #expect(throws: BadRequest.self) { try OllamaTranslation.messages(.array([.object(JSONObject([("content", .string("no role"))]))])).get() }
    }

    @Test func formatBecomesResponseFormat() throws {
        #expect(try OllamaTranslation.responseFormat(.string("json")).get() == .object(JSONObject([("type", .string("json_object"))])))
        let schema = JSONObject([("type", .string("object"))])
        #expect(try OllamaTranslation.responseFormat(.object(schema)).get()?["json_schema"]?["schema"] == .object(schema))
        #expect(try OllamaTranslation.responseFormat(nil).get() == nil)
        #expect(throws: BadRequest.self) { try OllamaTranslation.responseFormat(.int(3)).get() }
    }
}

/// The error shapes of every surface.
@Suite struct ErrorShapeTests {
    @Test func openAIAndOllamaShapes() throws {
        let openAI = try JSONParser.parse(ErrorShape.openAI.body(.notFound, "no such model", param: "model", code: "model_not_found")).0
        #expect(openAI["error"]?["message"] == .string("no such model") && openAI["error"]?["type"] == .string("not_found_error"))
        #expect(openAI["error"]?["param"] == .string("model") && openAI["error"]?["code"] == .string("model_not_found"))
        let ollama = try JSONParser.parse(ErrorShape.ollama.body(.badRequest, "bad")).0
        #expect(ollama == .object(JSONObject([("error", .string("bad"))])))
        let r = ErrorShape.openAI.response(.serviceUnavailable, "down")
        #expect(r.status == .serviceUnavailable && r.headers["x-should-retry"] == "false", "the OpenAI SDK must not retry what will not change")
        #expect(ErrorShape.ollama.response(.serviceUnavailable, "down").headers["x-should-retry"] == nil)
        #expect(String(decoding: ErrorShape.openAI.streamError("cut"), as: UTF8.self).hasPrefix("data: {\"error\""))
        #expect(ErrorShape.ollama.streamError("cut").last == 10)
        #expect(ErrorShape.openAIType(403) == "permission_error" && ErrorShape.openAIType(413) == "invalid_request_error")
    }
}
