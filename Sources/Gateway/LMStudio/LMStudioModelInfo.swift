import Shared

/// How a model is described to LM Studio's clients: the SDK's camelCase `LlmInfo` /
/// `EmbeddingModelInfo` and instance info (the JS SDK's field set, a superset of the Python SDK's, so
/// both validate it), and REST v1's snake_case entries. One place, so the two wire formats agree.
enum LMStudioModelInfo {
    /// Models LM Studio clients can use: llama-server models that are listed (whisper models have no
    /// LM Studio type).
    static func isOffered(_ m: ResolvedModel) -> Bool { !m.unlisted && m.runtimeKind == .llamaServer && m.kind != .audio }

    /// `llm` or `embedding`.
    static func type(_ m: ResolvedModel) -> String { m.kind == .embedding ? "embedding" : "llm" }

    static func displayName(_ m: ResolvedModel) -> String { m.displayName ?? m.metadata?.name ?? m.id }

    static func paramsString(_ m: ResolvedModel) -> String? {
        if let label = m.metadata?.sizeLabel { return label }
        guard let n = m.metadata?.parameterCount, n > 0 else { return nil }
        return OllamaAPI.parameterSize(n)
    }

    /// The file and its projector, in bytes.
    static func sizeBytes(_ m: ResolvedModel) -> Int {
        let file = m.metadata?.fileSize ?? FileStamp.of(m.path)?.size ?? 0
        return file + (m.mmproj.flatMap { FileStamp.of($0)?.size } ?? 0)
    }

    /// The nominal bits per weight of a llama.cpp quantization name (Q4_K_M → 4, IQ2_XS → 2, Q8_0 → 8,
    /// F16/BF16 → 16, F32 → 32, MXFP4 → 4): the JS SDK's `quantization.bits` must be a whole number.
    static func nominalBits(_ quantization: String) -> Int? {
        let q = quantization.uppercased()
        if q == "F32" { return 32 }
        if q == "F16" || q == "BF16" { return 16 }
        if q.hasPrefix("MXFP") { return Int(q.dropFirst(4).prefix { $0.isNumber }) }
        guard let start = q.firstIndex(where: { $0.isNumber }), q[..<start].allSatisfy({ $0 == "Q" || $0 == "I" || $0 == "T" }) else { return nil }
        return Int(q[start...].prefix { $0.isNumber })
    }

    static func bitsPerWeight(_ m: ResolvedModel) -> Double? {
        guard let meta = m.metadata, meta.parameterCount > 0 else { return nil }
        return (Double(meta.fileSize) * 8 / Double(meta.parameterCount) * 100).rounded() / 100
    }

    /// The context a runner of this model starts with when nothing overrides it.
    static func configuredContext(_ m: ResolvedModel) -> Int {
        if let ctx = m.parameters["ctx_size"]?.intValue, ctx > 0 { return ctx }
        return m.metadata?.contextLength ?? 0
    }

    // MARK: SDK (websocket) shapes

    /// `LlmInfo` / `EmbeddingModelInfo`, typed for the namespace asking (`llm` or `embedding`).
    static func sdkInfo(_ m: ResolvedModel, type: String? = nil) -> JSONObject {
        let kind = type ?? Self.type(m)
        var o = JSONObject([
            ("type", .string(kind)), ("modelKey", .string(m.id)), ("format", .string("gguf")),
            ("displayName", .string(displayName(m))), ("publisher", .string("local")), ("path", .string(m.path)),
            ("sizeBytes", .int(sizeBytes(m))), ("indexedModelIdentifier", .string(m.path)), ("deviceIdentifier", .null),
            ("maxContextLength", .int(m.metadata?.contextLength ?? configuredContext(m))),
        ])
        if kind == "llm" {
            o["vision"] = .bool(m.mmproj != nil)
            o["trainedForToolUse"] = .bool(false)
        }
        if let p = paramsString(m) { o["paramsString"] = .string(p) }
        if let arch = m.metadata?.architecture { o["architecture"] = .string(arch) }
        if let q = m.metadata?.quantization, let bits = nominalBits(q) {
            o["quantization"] = .object(JSONObject([("name", .string(q)), ("bits", .int(bits))]))
        }
        return o
    }

    /// Instance info for a model whose runner is gone (unloaded or evicted right after a prediction):
    /// the same shape, so clients that require instance info accept it.
    static func sdkInstance(of m: ResolvedModel, type: String? = nil) -> JSONObject {
        var o = sdkInfo(m, type: type)
        o["identifier"] = .string(m.id)
        o["instanceReference"] = .string(LMStudioInstances.reference(model: m.id, pid: nil))
        o["contextLength"] = .int(configuredContext(m))
        o["ttlMs"] = .null
        o["lastUsedTime"] = .null
        return o
    }

    /// Instance info: the model info plus identifier, reference, context length, TTL and last use.
    static func sdkInstance(_ i: LMStudioInstances.Instance, type: String? = nil, defaultTTLSeconds: Int) -> JSONObject {
        var o = sdkInfo(i.model, type: type)
        o["identifier"] = .string(i.identifier)
        o["instanceReference"] = .string(i.reference)
        o["contextLength"] = .int(i.contextLength)
        let ttl = i.loaded?.ttlSeconds ?? Double(i.model.ttlSeconds ?? defaultTTLSeconds)
        o["ttlMs"] = ttl < 0 ? .null : .int(Int(ttl * 1000))
        o["lastUsedTime"] = i.runner.idleSeconds.map { .int(LMStudioInstances.nowMs() - Int($0 * 1000)) } ?? .null
        return o
    }

    /// The load settings an instance runs with, as a KvConfig.
    static func loadConfig(_ i: LMStudioInstances.Instance) -> JSONValue {
        var fields: [JSONValue] = [field("llm.load.contextLength", .int(i.contextLength))]
        let p = i.model.parameters
        if let batch = i.parameters?["batch_size"] ?? p["batch_size"] { fields.append(field("llm.load.llama.evalBatchSize", batch)) }
        if let fa = i.parameters?["flash_attn"] ?? p["flash_attn"] {
            fields.append(field("llm.load.llama.flashAttention", .bool(fa.boolValue ?? (fa.stringValue == "on"))))
        }
        return .object(JSONObject([("fields", .array(fields))]))
    }

    static func field(_ key: String, _ value: JSONValue) -> JSONValue {
        .object(JSONObject([("key", .string(key)), ("value", value)]))
    }

    /// A loaded runner's memory, in the REST listings (a field of ours; LM Studio shows it in its app
    /// only): measured figures once llama-server reported its buffers, the estimate before.
    static func memory(_ r: RunnerInfo) -> JSONValue {
        let measured = r.measuredMemory
        var o = JSONObject([
            ("total_bytes", .int(measured?.totalBytes ?? r.memoryEstimateBytes)), ("gpu_bytes", .int(measured?.gpuBytes ?? 0)),
            ("measured", .bool(measured != nil)),
        ])
        if let devices = r.devices { o["devices"] = .array(devices.map(JSONValue.string)) }
        return .object(o)
    }

    // MARK: REST v1 shapes

    /// One entry of `GET /api/v1/models`.
    static func restEntry(_ m: ResolvedModel, instances: [LMStudioInstances.Instance]) -> JSONValue {
        var quant = JSONObject([("name", m.metadata?.quantization.map(JSONValue.string) ?? .null)])
        quant["bits_per_weight"] = bitsPerWeight(m).map(JSONValue.double) ?? .null
        let loaded: [JSONValue] = instances.map { i in
            var config = JSONObject([("context_length", .int(i.contextLength))])
            if let batch = i.parameters?["batch_size"] ?? m.parameters["batch_size"] { config["eval_batch_size"] = batch }
            if let parallel = m.parameters["parallel"] { config["parallel"] = parallel }
            return .object(JSONObject([("id", .string(i.identifier)), ("config", .object(config)), ("memory", memory(i.runner))]))
        }
        var o = JSONObject([
            ("type", .string(type(m))), ("publisher", .string("local")), ("key", .string(m.id)),
            ("display_name", .string(displayName(m))),
        ])
        if let arch = m.metadata?.architecture { o["architecture"] = .string(arch) }
        o["quantization"] = .object(quant)
        o["size_bytes"] = .int(sizeBytes(m))
        o["params_string"] = paramsString(m).map(JSONValue.string) ?? .null
        o["loaded_instances"] = .array(loaded)
        o["max_context_length"] = .int(m.metadata?.contextLength ?? configuredContext(m))
        o["format"] = .string("gguf")
        if m.kind != .embedding {
            o["capabilities"] = .object(JSONObject([("vision", .bool(m.mmproj != nil)), ("trained_for_tool_use", .bool(false))]))
        }
        return .object(o)
    }
}
