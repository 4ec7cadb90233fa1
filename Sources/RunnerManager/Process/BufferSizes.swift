import Shared

/// Reads llama-server's own account of what it allocated, from its log (lines llama.cpp prints at
/// verbosity 4, which runner-manager asks for through `LLAMA_ARG_LOG_VERBOSITY` unless a model sets
/// its own). Prefixes drift between versions (`llm_load_tensors` → `load_tensors`, `llama_kv_cache_init`
/// → `llama_kv_cache`, compute buffers under `sched_reserve`), so only the suffix is matched, as Ollama
/// does: `<device> <kind> buffer size = <MiB> MiB`, and `offloaded N/M layers to GPU`.
enum BufferSizes {
    static let kinds: Set<String> = ["model", "KV", "compute", "output", "RS"]

    /// Nil when the lines hold no buffer size (an older llama-server at its default verbosity, whisper-server).
    static func parse<S: Sequence>(_ lines: S) -> MeasuredMemory? where S.Element == String {
        var m = MeasuredMemory()
        var found = false
        for line in lines {
            if let (before, _) = line.splitOnce(" layers to GPU"), let (_, counts) = before.splitOnce("offloaded ") {
                let parts = counts.split(separator: "/")
                if parts.count == 2, let n = Int(parts[0]), let total = Int(parts[1]) { m.offloadedLayers = n; m.layers = total }
                continue
            }
            guard let (head, tail) = line.splitOnce(" buffer size") else { continue }
            let words = head.split(separator: " ")
            guard words.count >= 2, kinds.contains(String(words[words.count - 1])) else { continue }
            let afterEquals = tail.drop { $0 == " " || $0 == "=" }
            guard let mib = Double(afterEquals.prefix { $0.isNumber || $0 == "." }) else { continue }
            let device = Self.device(String(words[words.count - 2]))
            let kind = String(words[words.count - 1])
            let bytes = Int((mib * 1_048_576).rounded())
            m.devices[device, default: 0] += bytes
            m.kinds[kind, default: 0] += bytes
            found = true
        }
        return found ? m : nil
    }

    /// `CPU_Mapped` → `CPU`, `CUDA0_REPACK` → `CUDA0`; `CUDA_Host` stays (host memory pinned for CUDA).
    static func device(_ name: String) -> String {
        for suffix in ["_Mapped", "_REPACK"] where name.hasSuffix(suffix) { return String(name.dropLast(suffix.count)) }
        return name
    }

    /// The environment variable that raises llama-server's log verbosity to where it prints buffer
    /// sizes, unless the model's parameters set a verbosity themselves.
    static func environment(for model: ResolvedModel) -> [String: String] {
        guard model.runtimeKind == .llamaServer else { return [:] }
        let own = ["verbosity", "log_verbosity", "lv", "verbose", "log_verbose", "v", "log_disable"]
        if own.contains(where: { model.parameters[$0] != nil }) { return [:] }
        return ["LLAMA_ARG_LOG_VERBOSITY": "4"]
    }
}
