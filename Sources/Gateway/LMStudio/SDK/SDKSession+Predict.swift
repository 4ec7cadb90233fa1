import Shared

/// The `predict` channel (the SDKs' `respond`, `respond_stream`, `complete`, `act`) and the JS SDK's
/// `completeRawText`: llama-server's stream as `fragment` packets, tool calls as the
/// `toolCallGeneration*` packets, prompt processing as `promptProcessingProgress`, and a final
/// `success` with the stats. A client's `cancel` stops generation and still ends in `success`, with
/// `stopReason: "userStopped"` (the SDKs wait for it).
extension SDKSession {
    func predict(_ parameter: JSONValue, channel: SDKChannel, rawPrompt: String?) async throws(SDKError) {
        if let preset = parameter["fuzzyPresetIdentifier"]?.stringValue {
            let display = JSONObject([("code", .string("generic.presetNotFound")), ("specifiedFuzzyPresetIdentifier", .string(preset)),
                                      ("availablePresetsSample", .array([])), ("totalAvailablePresets", .int(0))])
            throw SDKError(title: "No preset found that matches \"\(preset)\"", cause: "Llama Runner has no presets",
                           suggestion: "Pass the settings in the prediction config instead", displayData: .object(display))
        }
        let model = try await model(for: parameter["modelSpecifier"])
        let stack = try SDKConfigStack(parameter["predictionConfigStack"])
        let sampling = try stack.sampling()
        let raw = rawPrompt != nil || stack.isRawCompletion
        var request: JSONObject
        if raw {
            let prompt: String
            if let rawPrompt { prompt = rawPrompt } else { prompt = SDKChat.concatenated(try SDKChat.messages(parameter["history"])) }
            request = SDKChat.completionFields(sampling)
            request["prompt"] = .string(prompt)
        } else {
            request = sampling
            request["messages"] = .array(try SDKChat.messages(parameter["history"]))
        }
        let prediction = LMStudioPrediction(backend: backend, model: model, parameters: runnerParameters(model), ttlSeconds: nil,
                                            raw: raw, request: request, route: raw ? "ws:completeRawText" : "ws:predict")
        let socket = self.socket
        let result: Result<LMStudioPrediction.Outcome, APIError> = await channel.cancellable(loop: backend.loop) {
            do throws(APIError) {
                var promptProgress = -1.0
                return .success(try await prediction.run(waiting: { _ in
                    // The runner is still being acquired (a load): the sync SDK gives up after 60 s
                    // without a message, so the wait is reported as prompt progress that has not begun.
                    await self.packet(channel, "promptProcessingProgress", Self.promptProgress(processed: 0, cached: 0, total: 0))
                }) { delta in
                    switch delta {
                    case .content(let text):
                        await self.packet(channel, "fragment", Self.fragment(text, reasoning: false))
                    case .reasoning(let text):
                        await self.packet(channel, "fragment", Self.fragment(text, reasoning: true))
                    case .toolCallStarted(_, let id, let name):
                        await self.packet(channel, "toolCallGenerationStart", id.isEmpty ? [] : [("toolCallId", .string(id))])
                        if !name.isEmpty { await self.packet(channel, "toolCallGenerationNameReceived", [("name", .string(name))]) }
                    case .toolCallArguments(_, let text):
                        await self.packet(channel, "toolCallGenerationArgumentFragmentGenerated", [("content", .string(text))])
                    case .promptProgress(let processed, let cached, let total):
                        guard total > 0 else { break }
                        let fraction = Double(processed) / Double(total)
                        guard fraction > promptProgress else { break }
                        promptProgress = fraction
                        await self.packet(channel, "promptProcessingProgress", Self.promptProgress(processed: processed, cached: cached, total: total))
                    }
                    return socket.isOpen
                })
            } catch {
                return .failure(error)
            }
        }
        let outcome: LMStudioPrediction.Outcome
        switch result {
        case .success(let o): outcome = o
        case .failure(let error) where error.status == .notFound:
            throw notFound(model.id, loaded: await loadedIdentifiers(), cause: error.message)
        case .failure(let error):
            throw SDKError(title: "Prediction failed", cause: error.message)
        }
        var stop = Self.stopReason(outcome)
        if !outcome.cancelled {
            for (_, call) in outcome.stream.orderedToolCalls {
                if let arguments = try? JSONParser.parse(call.arguments.isEmpty ? "{}" : call.arguments), arguments.objectValue != nil {
                    let request = JSONObject([("type", .string("function")), ("id", .string(call.id.isEmpty ? "call_\(channel.id)" : call.id)),
                                              ("name", .string(call.name)), ("arguments", arguments)])
                    await packet(channel, "toolCallGenerationEnd", [("toolCallRequest", .object(request)), ("rawContent", .string(call.arguments))])
                    stop = "toolCalls"
                } else {
                    await packet(channel, "toolCallGenerationFailed", [("error", SDKError(title: "The model's tool call \(call.name) has arguments that are not a JSON object").json),
                                                                       ("rawContent", .string(call.arguments))])
                }
            }
        }
        let instance = await backend.instance(of: model)
        let modelInfo: JSONValue = instance.map { .object(LMStudioModelInfo.sdkInstance($0, type: "llm", defaultTTLSeconds: backend.defaultTTLSeconds)) }
            ?? .object(LMStudioModelInfo.sdkInstance(of: model, type: "llm"))
        let loadConfig = instance.map(LMStudioModelInfo.loadConfig) ?? .object(JSONObject([("fields", .array([]))]))
        await packet(channel, "success", [("stats", Self.stats(outcome, stopReason: stop)), ("modelInfo", modelInfo),
                                          ("loadModelConfig", loadConfig), ("predictionConfig", stack.kvConfig)])
    }

    static func fragment(_ text: String, reasoning: Bool) -> [(String, JSONValue)] {
        [("fragment", .object(JSONObject([("content", .string(text)), ("tokensCount", .int(1)), ("containsDrafted", .bool(false)),
                                          ("reasoningType", .string(reasoning ? "reasoning" : "none")), ("isStructural", .bool(false))])))]
    }

    static func promptProgress(processed: Int, cached: Int, total: Int) -> [(String, JSONValue)] {
        let progress = total > 0 ? Double(processed) / Double(total) : 0
        return [("progress", .double(progress)),
                ("details", .object(JSONObject([("cachedTokenCount", .int(cached)), ("totalPromptTokenCount", .int(total)),
                                                ("processedPromptTokenCount", .int(processed)),
                                                ("unprocessedPromptTokenCount", .int(max(0, total - processed)))])))]
    }

    /// LM Studio's stop reason for how the prediction ended.
    static func stopReason(_ outcome: LMStudioPrediction.Outcome) -> String {
        if outcome.cancelled { return "userStopped" }
        switch outcome.stream.stop {
        case .lengthLimit?: return "maxPredictedTokensReached"
        case .toolCalls?: return "toolCalls"
        case .stopString?: return "stopStringFound"
        case .endOfSequence?, nil: return "eosFound"
        }
    }

    static func stats(_ outcome: LMStudioPrediction.Outcome, stopReason: String) -> JSONValue {
        let usage = outcome.stream.usage
        var o = JSONObject([("stopReason", .string(stopReason))])
        // Optional numbers are left out rather than sent as null (what a NaN would become): the JS
        // SDK accepts a missing field, not a null one.
        if let tps = outcome.tokensPerSecond, tps.isFinite { o["tokensPerSecond"] = .double(tps) }
        if let ttft = outcome.timeToFirstTokenSeconds, ttft.isFinite { o["timeToFirstTokenSec"] = .double(ttft) }
        o["promptTokensCount"] = .int(usage.promptTokens)
        o["predictedTokensCount"] = .int(outcome.predictedTokens)
        o["totalTokensCount"] = .int(usage.promptTokens + outcome.predictedTokens)
        if outcome.totalSeconds.isFinite { o["totalTimeSec"] = .double(outcome.totalSeconds) }
        return .object(o)
    }
}
