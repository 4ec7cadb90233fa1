import Shared

/// An LM Studio `KvConfigStack` (`{"layers":[{"layerName","config":{"fields":[{"key","value"}]}}]}`)
/// read into llama-server terms: prediction settings become request fields, load settings runner
/// parameters. Later layers override earlier ones. Keys this server has no use for (GPU split, MoE
/// experts, speculative decoding, reasoning parsing) are accepted and ignored, as LM Studio's own
/// server ignores keys it does not know; a known key with a value of the wrong type is an error
/// naming the key.
struct SDKConfigStack: Sendable {
    private(set) var fields: [String: JSONValue] = [:]
    /// Keys in the order they were given (for echoing the configuration back).
    private(set) var order: [String] = []
    private(set) var layerNames: [String] = []

    /// A stack's fields; a malformed stack is an `SDKError`.
    init(_ value: JSONValue?) throws(SDKError) {
        guard let value, !value.isNull else { return }
        guard let layers = value["layers"]?.arrayValue else { throw SDKError.invalidParameter("a config stack needs \"layers\": an array") }
        for (i, layer) in layers.enumerated() {
            guard let fields = layer["config"]?["fields"]?.arrayValue else {
                throw SDKError.invalidParameter("config stack layer \(i) needs config.fields: an array")
            }
            layerNames.append(layer["layerName"]?.stringValue ?? "")
            try add(fields, at: "layer \(i)")
        }
    }

    /// A single `KvConfig` (`{"fields":[…]}`).
    init(config value: JSONValue?) throws(SDKError) {
        guard let value, !value.isNull else { return }
        guard let fields = value["fields"]?.arrayValue else { throw SDKError.invalidParameter("a config needs \"fields\": an array") }
        try add(fields, at: "config")
    }

    private mutating func add(_ list: [JSONValue], at place: String) throws(SDKError) {
        for (j, field) in list.enumerated() {
            guard let key = field["key"]?.stringValue else { throw SDKError.invalidParameter("\(place) field \(j) needs a string \"key\"") }
            if fields[key] == nil { order.append(key) }
            fields[key] = field["value"] ?? .null
        }
    }

    /// The value of `key`; a checkbox setting (`{"checked","value"}`) gives its value only when checked.
    func value(_ key: String) -> JSONValue? {
        guard let v = fields[key], !v.isNull else { return nil }
        if case .object(let o) = v, o["checked"] != nil {
            guard o["checked"]?.boolValue == true else { return nil }
            return o["value"]
        }
        return v
    }

    private func number(_ key: String) throws(SDKError) -> Double? {
        guard let v = value(key) else { return nil }
        guard let d = v.doubleValue else { throw SDKError.invalidParameter("\(key): expected a number, got \(v.typeDescription)") }
        return d
    }

    private func integer(_ key: String) throws(SDKError) -> Int? {
        guard let v = value(key) else { return nil }
        guard let n = v.intValue else { throw SDKError.invalidParameter("\(key): expected an integer, got \(v.typeDescription)") }
        return n
    }

    /// Python's `complete()` asks for a raw completion with a prompt template that only concatenates
    /// the messages (its `completeModeFormatting` layer); the JS SDK uses `completeRawText` instead.
    var isRawCompletion: Bool {
        if layerNames.contains("completeModeFormatting") { return true }
        let template = fields["llm.prediction.promptTemplate"]?["jinjaPromptTemplate"]?["template"]?.stringValue ?? ""
        return template.replacingSpaces() == "{%formessageinmessages%}{{message['content']}}{%endfor%}"
    }

    /// The prediction settings as llama-server request fields.
    func sampling() throws(SDKError) -> JSONObject {
        var o = JSONObject()
        if let t = try number("llm.prediction.temperature") { o["temperature"] = .double(t) }
        if let n = try integer("llm.prediction.maxPredictedTokens"), n >= 0 { o["max_tokens"] = .int(n) }
        if let k = try integer("llm.prediction.topKSampling") { o["top_k"] = .int(k) }
        if let p = try number("llm.prediction.topPSampling") { o["top_p"] = .double(p) }
        if let p = try number("llm.prediction.minPSampling") { o["min_p"] = .double(p) }
        if let r = try number("llm.prediction.repeatPenalty") { o["repeat_penalty"] = .double(r) }
        if let seed = try integer("llm.prediction.seed") { o["seed"] = .int(seed) }
        if let stops = value("llm.prediction.stopStrings") {
            guard let list = stops.arrayValue, list.allSatisfy({ $0.stringValue != nil }) else {
                throw SDKError.invalidParameter("llm.prediction.stopStrings: expected an array of strings")
            }
            if !list.isEmpty { o["stop"] = .array(list) }
        }
        if let structured = value("llm.prediction.structured") {
            switch structured["type"]?.stringValue {
            case "json"?:
                guard let schema = structured["jsonSchema"], schema.objectValue != nil else {
                    throw SDKError.invalidParameter("llm.prediction.structured: a json setting needs jsonSchema, an object")
                }
                o["response_format"] = .object(JSONObject([("type", .string("json_schema")),
                                                           ("json_schema", .object(JSONObject([("name", .string("response")), ("schema", schema)])))]))
            case "gbnf"?:
                guard let grammar = structured["gbnfGrammar"]?.stringValue else {
                    throw SDKError.invalidParameter("llm.prediction.structured: a gbnf setting needs gbnfGrammar, a string")
                }
                o["grammar"] = .string(grammar)
            case "none"?, nil: break
            case let other?: throw SDKError.invalidParameter("llm.prediction.structured: unknown type \"\(other)\" (json, gbnf or none)")
            }
        }
        if let tools = value("llm.prediction.tools") {
            switch tools["type"]?.stringValue {
            case "toolArray"?:
                guard let list = tools["tools"]?.arrayValue else { throw SDKError.invalidParameter("llm.prediction.tools: toolArray needs tools, an array") }
                if !list.isEmpty { o["tools"] = .array(list) }
            case "none"?, nil: break
            case let other?: throw SDKError.invalidParameter("llm.prediction.tools: unknown type \"\(other)\" (toolArray or none)")
            }
        }
        return o
    }

    /// The load settings as runner parameters (nil when there are none, so the model's own runner
    /// is used). `blockCount` turns a GPU offload ratio into a layer count.
    func loadParameters(blockCount: Int?) throws(SDKError) -> JSONValue? {
        var o = JSONObject()
        for prefix in ["llm.load", "embedding.load"] {
            if let ctx = try integer("\(prefix).contextLength") {
                guard ctx > 0 else { throw SDKError.invalidParameter("\(prefix).contextLength: must be positive") }
                o["ctx_size"] = .int(ctx)
            }
            if let batch = try integer("\(prefix).llama.evalBatchSize") { o["batch_size"] = .int(batch) }
            if let fa = value("\(prefix).llama.flashAttention") {
                guard let on = fa.boolValue else { throw SDKError.invalidParameter("\(prefix).llama.flashAttention: expected a boolean") }
                o["flash_attn"] = .string(on ? "on" : "off")
            }
            if let base = try number("\(prefix).llama.ropeFrequencyBase") { o["rope_freq_base"] = .double(base) }
            if let scale = try number("\(prefix).llama.ropeFrequencyScale") { o["rope_freq_scale"] = .double(scale) }
            if let mmap = value("\(prefix).llama.tryMmap")?.boolValue, !mmap { o["no_mmap"] = .bool(true) }
            if let keep = value("\(prefix).llama.keepModelInMemory")?.boolValue, keep { o["mlock"] = .bool(true) }
            if let ratio = value("\(prefix).llama.acceleration.offloadRatio") {
                if ratio.stringValue == "max" {
                    o["n_gpu_layers"] = .int(999)
                } else if let r = ratio.doubleValue, r >= 0, r <= 1 {
                    o["n_gpu_layers"] = .int(r >= 1 ? 999 : Int((r * Double(blockCount ?? 0)).rounded()))
                } else {
                    throw SDKError.invalidParameter("\(prefix).llama.acceleration.offloadRatio: expected a number from 0 to 1 or \"max\"")
                }
            }
        }
        if let seed = try integer("llm.load.seed") { o["seed"] = .int(seed) }
        if let k = value("llm.load.llama.kCacheQuantizationType")?.stringValue { o["cache_type_k"] = .string(k) }
        if let v = value("llm.load.llama.vCacheQuantizationType")?.stringValue { o["cache_type_v"] = .string(v) }
        return o.isEmpty ? nil : .object(o)
    }

    /// The fields as a `KvConfig`, for echoing the configuration a prediction ran with.
    var kvConfig: JSONValue {
        .object(JSONObject([("fields", .array(order.map { LMStudioModelInfo.field($0, fields[$0] ?? .null) }))]))
    }
}

extension String {
    /// The string without spaces, tabs and newlines (to compare templates however they are laid out).
    func replacingSpaces() -> String { String(filter { $0 != " " && $0 != "\n" && $0 != "\t" && $0 != "\r" }) }
}
