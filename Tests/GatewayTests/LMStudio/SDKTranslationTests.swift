import Shared
import Testing
@testable import Gateway

/// The pure parts of LM Studio's SDK protocol: config stacks, chat histories, stream deltas, envelopes
/// and the authentication check, from JSON, no sockets.
@Suite struct SDKTranslationTests {
    static func json(_ text: String) -> JSONValue { try! JSONParser.parse(text) }

    static func stack(_ fields: String, layers extra: String = "") -> JSONValue {
        json(#"{"layers":[{"layerName":"apiOverride","config":{"fields":\#(fields)}}\#(extra)]}"#)
    }

    @Test func predictionSettingsBecomeLlamaServerFields() throws {
        let s = try SDKConfigStack(Self.stack(#"""
            [{"key":"llm.prediction.maxPredictedTokens","value":{"checked":true,"value":50}},
             {"key":"llm.prediction.temperature","value":0.2},
             {"key":"llm.prediction.topPSampling","value":{"checked":false,"value":0.9}},
             {"key":"llm.prediction.minPSampling","value":{"checked":true,"value":0.05}},
             {"key":"llm.prediction.topKSampling","value":40},
             {"key":"llm.prediction.stopStrings","value":["END"]},
             {"key":"llm.prediction.structured","value":{"type":"json","jsonSchema":{"type":"object"}}},
             {"key":"llm.prediction.speculativeDecoding.draftModel","value":"ignored"}]
            """#))
        let o = try s.sampling()
        #expect(o["max_tokens"] == .int(50) && o["temperature"] == .double(0.2) && o["min_p"] == .double(0.05) && o["top_k"] == .int(40))
        #expect(o["top_p"] == nil, "an unchecked checkbox setting is not applied")
        #expect(o["stop"] == .array([.string("END")]))
        #expect(o["response_format"]?["type"] == .string("json_schema") && o["response_format"]?["json_schema"]?["schema"] == .object(JSONObject([("type", .string("object"))])))
        #expect(!s.isRawCompletion)
    }

    @Test func laterLayersWinAndTheCompletionLayerMeansARawPrompt() throws {
        let s = try SDKConfigStack(Self.stack(#"[{"key":"llm.prediction.temperature","value":0.9}]"#,
            layers: #",{"layerName":"completeModeFormatting","config":{"fields":[{"key":"llm.prediction.temperature","value":0.1}]}}"#))
        #expect(try s.sampling()["temperature"] == .double(0.1))
        #expect(s.isRawCompletion)
        let gbnf = try SDKConfigStack(Self.stack(#"[{"key":"llm.prediction.structured","value":{"type":"gbnf","gbnfGrammar":"root ::= \"a\""}}]"#))
        #expect(try gbnf.sampling()["grammar"] == .string(#"root ::= "a""#))
        let completion = SDKChat.completionFields(try s.sampling().merging([("max_tokens", .int(6))]))
        #expect(completion["n_predict"] == .int(6) && completion["max_tokens"] == nil)
    }

    @Test func loadSettingsBecomeRunnerParameters() throws {
        let s = try SDKConfigStack(Self.stack(#"""
            [{"key":"llm.load.contextLength","value":4096},{"key":"llm.load.llama.evalBatchSize","value":256},
             {"key":"llm.load.llama.flashAttention","value":true},{"key":"llm.load.llama.acceleration.offloadRatio","value":0.5},
             {"key":"llm.load.seed","value":{"checked":true,"value":11434}},{"key":"llm.load.numExperts","value":4}]
            """#))
        let p = try #require(try s.loadParameters(blockCount: 30))
        #expect(p["ctx_size"] == .int(4096) && p["batch_size"] == .int(256) && p["flash_attn"] == .string("on"))
        #expect(p["n_gpu_layers"] == .int(15) && p["seed"] == .int(11434))
        #expect(try SDKConfigStack(Self.stack("[]")).loadParameters(blockCount: 30) == nil, "no settings: the model's own runner")
    }

    @Test(arguments: [
        (#"[{"key":"llm.prediction.temperature","value":"hot"}]"#, "llm.prediction.temperature: expected a number"),
        (#"[{"key":"llm.prediction.stopStrings","value":[1]}]"#, "stopStrings: expected an array of strings"),
        (#"[{"key":"llm.prediction.structured","value":{"type":"xml"}}]"#, "unknown type \"xml\""),
        (#"[{"value":1}]"#, "needs a string \"key\""),
    ])
    func aKnownKeyOfTheWrongTypeIsAnErrorNamingIt(fields: String, message: String) {
        #expect {
            try SDKConfigStack(Self.stack(fields)).sampling()
        } throws: { error in
            (error as? SDKError)?.title.contains(message) == true
        }
        let bad = Self.stack(#"[{"key":"llm.load.contextLength","value":-1}]"#)
        #expect(throws: SDKError.self) { try SDKConfigStack(bad).loadParameters(blockCount: nil) }
    }

    @Test func chatHistoriesBecomeOpenAIMessages() throws {
        let history = Self.json(#"""
            {"messages":[
              {"role":"system","content":[{"type":"text","text":"Be brief."}]},
              {"role":"user","content":[{"type":"text","text":"Add "},{"type":"text","text":"1 and 2"}]},
              {"role":"assistant","content":[{"type":"text","text":""},{"type":"toolCallRequest","toolCallRequest":{"type":"function","id":"call_7","name":"add","arguments":{"a":1,"b":2}}}]},
              {"role":"tool","content":[{"type":"toolCallResult","content":"3","toolCallId":"call_7"}]}
            ]}
            """#)
        let m = try SDKChat.messages(history)
        #expect(m.count == 4)
        #expect(m[1]["content"] == .string("Add 1 and 2"))
        let call = m[2]["tool_calls"]?.arrayValue?.first
        #expect(call?["id"] == .string("call_7") && call?["function"]?["name"] == .string("add"))
        #expect(call?["function"]?["arguments"] == .string(#"{"a":1,"b":2}"#), "OpenAI wants arguments as a JSON string")
        #expect(m[3] == Self.json(#"{"role":"tool","content":"3","tool_call_id":"call_7"}"#))
        #expect(SDKChat.concatenated(try SDKChat.messages(Self.json(#"{"messages":[{"role":"user","content":[{"type":"text","text":"raw"}]}]}"#))) == "raw")
        #expect(throws: SDKError.self) { try SDKChat.messages(Self.json(#"{"messages":[{"role":"robot","content":[]}]}"#)) }
        #expect(throws: SDKError.self) { try SDKChat.messages(Self.json(#"{"messages":[{"role":"user","content":[{"type":"file","fileType":"image"}]}]}"#)) }
    }

    @Test func toolCallDeltasAreAssembledInOrder() {
        func event(_ s: String) -> String { "data: \(s)\n\n" }
        var stream = CompletionStream()
        let deltas = stream.feed(Array((
            event(#"{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"call_a","function":{"name":"add","arguments":"{\"a\""}}]}}]}"#)
            + event(#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":":1}"}}]}}]}"#)
            + event(#"{"prompt_progress":{"total":20,"cache":4,"processed":20,"time_ms":3}}"#)
            + event(#"{"choices":[{"finish_reason":"tool_calls","delta":{}}],"timings":{"prompt_n":16,"cache_n":4,"predicted_n":9,"predicted_per_second":50.5}}"#)
        ).utf8))
        #expect(deltas == [.toolCallStarted(index: 0, id: "call_a", name: "add"), .toolCallArguments(index: 0, #"{"a""#),
                           .toolCallArguments(index: 0, ":1}"), .promptProgress(processed: 20, cached: 4, total: 20)])
        #expect(stream.stop == .toolCalls && stream.orderedToolCalls.first?.call == CompletionStream.ToolCall(id: "call_a", name: "add", arguments: #"{"a":1}"#))
        #expect(stream.usage == Usage(promptTokens: 20, completionTokens: 9, cachedTokens: 4) && stream.tokensPerSecond == 50.5)
    }

    @Test func stopReasonsAreLMStudiosOwn() {
        func outcome(_ stop: CompletionStream.Stop?, cancelled: Bool = false) -> LMStudioPrediction.Outcome {
            var o = LMStudioPrediction.Outcome()
            var s = CompletionStream()
            let reason = switch stop {
            case .lengthLimit?: #""stop":true,"stop_type":"limit""#
            case .stopString?: #""stop":true,"stop_type":"word""#
            case .endOfSequence?: #""stop":true,"stop_type":"eos""#
            default: #""stop":false"#
            }
            _ = s.feed(Array("data: {\"content\":\"x\",\(reason)}\n\n".utf8))
            o.stream = s
            o.cancelled = cancelled
            return o
        }
        #expect(SDKSession.stopReason(outcome(.lengthLimit)) == "maxPredictedTokensReached")
        #expect(SDKSession.stopReason(outcome(.stopString)) == "stopStringFound")
        #expect(SDKSession.stopReason(outcome(.endOfSequence)) == "eosFound")
        #expect(SDKSession.stopReason(outcome(.lengthLimit, cancelled: true)) == "userStopped", "a cancel wins")
    }

    @Test func authenticationAcceptsAnyClientWithoutKeysAndOnlyTheTokenWithThem() {
        let message = Self.json(#"{"authVersion":1,"clientIdentifier":"Abc12345","clientPasskey":"abcdefghij0123456789"}"#)
        #expect((try? LMStudioSDK.authenticate(message, apiKeys: []).get()) == "Abc12345")
        #expect((try? LMStudioSDK.authenticate(message, apiKeys: ["sk-lm-Abc12345:abcdefghij0123456789"]).get()) == "Abc12345")
        #expect((try? LMStudioSDK.authenticate(message, apiKeys: ["abcdefghij0123456789"]).get()) == "Abc12345", "a plain key as the passkey")
        #expect((try? LMStudioSDK.authenticate(message, apiKeys: ["sk-lm-Abc12345:zzzzzzzzzzzzzzzzzzzz"]).get()) == nil)
        #expect((try? LMStudioSDK.authenticate(Self.json(#"{"authVersion":2,"clientIdentifier":"a","clientPasskey":"b"}"#), apiKeys: []).get()) == nil)
        #expect((try? LMStudioSDK.authenticate(Self.json(#"{"authVersion":1,"clientIdentifier":7}"#), apiKeys: []).get()) == nil)
        let long = String(repeating: "x", count: 257)
        #expect((try? LMStudioSDK.authenticate(Self.json(#"{"authVersion":1,"clientIdentifier":"\#(long)","clientPasskey":"b"}"#), apiKeys: []).get()) == nil)
    }

    @Test(arguments: [("Q4_K_M", 4), ("Q4_1", 4), ("Q8_0", 8), ("IQ2_XS", 2), ("TQ1_0", 1), ("F16", 16), ("BF16", 16), ("F32", 32),
                      ("MXFP4", 4), ("unknown", nil)] as [(String, Int?)])
    func quantizationBitsAreWholeNumbersAsTheJSSDKRequires(name: String, bits: Int?) {
        #expect(LMStudioModelInfo.nominalBits(name) == bits)
    }

    @Test func envelopesAreExactlyTheProtocols() {
        #expect(SDKEnvelope.rpcResult(3, nil) == Self.json(#"{"type":"rpcResult","callId":3}"#), "a void result has no result key")
        #expect(SDKEnvelope.rpcResult(4, .array([])) == Self.json(#"{"type":"rpcResult","callId":4,"result":[]}"#))
        #expect(SDKEnvelope.channelClose(2) == Self.json(#"{"type":"channelClose","channelId":2}"#))
        let notFound = SDKError.noModelMatching("x", loaded: ["a"], available: ["a", "b"]).json
        #expect(notFound["displayData"]?["code"] == .string("generic.noModelMatchingQuery"))
        #expect(notFound["displayData"]?["query"]?["identifier"] == .string("x") && notFound["displayData"]?["totalLoadedModels"] == .int(1))
        #expect(notFound["title"]?.stringValue?.contains("x") == true)
        let fragment = JSONValue.object(JSONObject(SDKSession.fragment("Hi", reasoning: false)))
        #expect(fragment["fragment"] == Self.json(#"{"content":"Hi","tokensCount":1,"containsDrafted":false,"reasoningType":"none","isStructural":false}"#))
    }
}

extension JSONObject {
    func merging(_ extra: [(String, JSONValue)]) -> JSONObject {
        var o = self
        for (k, v) in extra { o[k] = v }
        return o
    }
}
