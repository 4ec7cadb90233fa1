import Shared

/// What a GGUF file says about its model: every key/value (large arrays summarized) and the parameter
/// count summed from the tensor shapes.
struct GGUFMetadata: Sendable, Equatable {
    let version: Int
    let tensorCount: Int
    let fileSize: Int
    let parameterCount: Int
    let entries: JSONObject
    /// Bytes of tensor data in the repeating layers (`blk.N.…`): what `--n-gpu-layers` moves to a GPU;
    /// nil in a metadata cache written before it was read.
    let layerBytes: Int?
    /// Bytes of tensor data in the file (the rest is the header).
    let dataBytes: Int?

    var architecture: String? { entries["general.architecture"]?.stringValue }

    /// As stored in the persistent metadata cache (`MetadataCacheFile`).
    var cacheValue: JSONValue {
        var o = JSONObject([("version", .int(version)), ("tensor_count", .int(tensorCount)), ("file_size", .int(fileSize)),
                            ("parameter_count", .int(parameterCount)), ("entries", .object(entries))])
        if let layerBytes { o["layer_bytes"] = .int(layerBytes) }
        if let dataBytes { o["data_bytes"] = .int(dataBytes) }
        return .object(o)
    }

    init(version: Int, tensorCount: Int, fileSize: Int, parameterCount: Int, entries: JSONObject, layerBytes: Int? = nil, dataBytes: Int? = nil) {
        self.version = version
        self.tensorCount = tensorCount
        self.fileSize = fileSize
        self.parameterCount = parameterCount
        self.entries = entries
        self.layerBytes = layerBytes
        self.dataBytes = dataBytes
    }

    init?(cacheValue v: JSONValue) {
        guard let version = v["version"]?.intValue, let tensors = v["tensor_count"]?.intValue, let size = v["file_size"]?.intValue,
              let parameters = v["parameter_count"]?.intValue, let entries = v["entries"]?.objectValue else { return nil }
        self.init(version: version, tensorCount: tensors, fileSize: size, parameterCount: parameters, entries: entries,
                  layerBytes: v["layer_bytes"]?.intValue, dataBytes: v["data_bytes"]?.intValue)
    }

    func archValue(_ suffix: String) -> JSONValue? {
        guard let arch = architecture else { return nil }
        return entries["\(arch).\(suffix)"]
    }

    /// The summary the registry's snapshot carries (and the gateway shows).
    var summary: ModelMetadata {
        let fileType = entries["general.file_type"]?.intValue
        let embeddingArchitectures: Set<String> = ["bert", "nomic-bert", "nomic-bert-moe", "jina-bert-v2", "t5encoder", "modern-bert", "neo-bert"]
        let pooling = archValue("pooling_type")?.intValue
        return ModelMetadata(
            architecture: architecture,
            name: entries["general.name"]?.stringValue,
            sizeLabel: entries["general.size_label"]?.stringValue,
            parameterCount: parameterCount,
            fileType: fileType,
            quantization: fileType.map(Self.quantizationName),
            contextLength: archValue("context_length")?.intValue,
            embeddingLength: archValue("embedding_length")?.intValue,
            blockCount: archValue("block_count")?.intValue,
            headCount: archValue("attention.head_count")?.intValue,
            headCountKV: archValue("attention.head_count_kv")?.intValue ?? archValue("attention.head_count")?.intValue,
            keyLength: archValue("attention.key_length")?.intValue,
            valueLength: archValue("attention.value_length")?.intValue,
            hasChatTemplate: entries["tokenizer.chat_template"] != nil,
            tokenizerModel: entries["tokenizer.ggml.model"]?.stringValue,
            isEmbeddingModel: (pooling != nil && pooling != 0) || embeddingArchitectures.contains(architecture ?? ""),
            fileSize: fileSize,
            ggufVersion: version,
            layerBytes: layerBytes,
            dataBytes: dataBytes,
            vocabularySize: entries["tokenizer.ggml.tokens"].flatMap(Self.arrayCount))
    }

    /// The length of an array value, listed or summarized (`{"type": "array", "length": n}`).
    static func arrayCount(_ v: JSONValue) -> Int? {
        if let items = v.arrayValue { return items.count }
        return v["length"]?.intValue
    }

    /// llama.cpp's `llama_ftype` names (`general.file_type`).
    static func quantizationName(_ fileType: Int) -> String {
        switch fileType {
        case 0: "F32"
        case 1: "F16"
        case 2: "Q4_0"
        case 3: "Q4_1"
        case 7: "Q8_0"
        case 8: "Q5_0"
        case 9: "Q5_1"
        case 10: "Q2_K"
        case 11: "Q3_K_S"
        case 12: "Q3_K_M"
        case 13: "Q3_K_L"
        case 14: "Q4_K_S"
        case 15: "Q4_K_M"
        case 16: "Q5_K_S"
        case 17: "Q5_K_M"
        case 18: "Q6_K"
        case 19: "IQ2_XXS"
        case 20: "IQ2_XS"
        case 21: "Q2_K_S"
        case 22: "IQ3_XS"
        case 23: "IQ3_XXS"
        case 24: "IQ1_S"
        case 25: "IQ4_NL"
        case 26: "IQ3_S"
        case 27: "IQ3_M"
        case 28: "IQ2_S"
        case 29: "IQ2_M"
        case 30: "IQ4_XS"
        case 31: "IQ1_M"
        case 32: "BF16"
        case 36: "TQ1_0"
        case 37: "TQ2_0"
        case 38: "MXFP4_MOE"
        default: "unknown (\(fileType))"
        }
    }
}
