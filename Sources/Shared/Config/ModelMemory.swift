import Glibc

/// What a model's runner is expected to take in memory before it runs, and the budget models share:
/// the scheduler places runners by it, and the registry refuses a pinned set that could never fit it.
public enum ModelMemory {
    /// Compute buffers and the process itself, beyond weights and KV cache.
    public static let overhead = 128 << 20

    /// llama-server: the file, plus its KV cache (layers × context × KV heads × head size × 2 for K and
    /// V × 2 bytes for f16), plus `overhead`. whisper-server (`whisperFileSize` given): the file plus the
    /// same overhead (tiny.en, 78 MB, measured 151 MB RSS after a transcription).
    public static func estimate(metadata: ModelMetadata?, parameters: JSONValue, whisperFileSize: Int? = nil) -> Int {
        if let size = whisperFileSize { return size + overhead }
        guard let meta = metadata else { return overhead }
        let requested = parameters["ctx_size"]?.intValue ?? parameters["c"]?.intValue ?? 0
        let context = requested > 0 ? requested : (meta.contextLength ?? 4096)
        let layers = meta.blockCount ?? 0
        let kvHeads = meta.headCountKV ?? meta.headCount ?? 0
        let headSize = meta.keyLength ?? ((meta.embeddingLength ?? 0) / max(1, meta.headCount ?? 1))
        let kv = layers * context * kvHeads * headSize * 2 * 2
        return meta.fileSize + kv + overhead
    }

    /// `limits.memory_budget` in bytes: a number, or a percentage of physical memory (80 % otherwise).
    public static func budget(_ value: JSONValue) -> Int {
        let physical = Int(sysconf(Int32(_SC_PHYS_PAGES))) * Int(sysconf(Int32(_SC_PAGESIZE)))
        if let bytes = value.intValue, bytes > 0 { return bytes }
        if let text = value.stringValue, text.hasSuffix("%"), let pct = Double(text.dropLast()) {
            return Int(Double(physical) * pct / 100)
        }
        return physical * 8 / 10
    }

    /// Bytes as gigabytes to one decimal, without a trailing ".0" (for messages).
    public static func gigabytes(_ bytes: Int) -> String {
        let tenths = Int((Double(bytes) / Double(1 << 30) * 10).rounded())
        return tenths % 10 == 0 ? "\(tenths / 10) GB" : "\(tenths / 10).\(tenths % 10) GB"
    }
}
