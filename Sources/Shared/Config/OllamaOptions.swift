/// Ollama's option names beside llama-server's: one table for the gateway (a request's `options`),
/// `POST /api/create`'s `parameters`, an Ollama cache's params layer (the registry), and `/api/show`,
/// which names a model's parameters as Ollama would.
public enum OllamaOptions {
    public enum Kind: Sendable { case integer, number }

    public struct Option: Sendable {
        /// Ollama's name (`num_ctx`, `temperature`).
        public let name: String
        /// llama-server's request field, for a per-request sampling option; nil for a load-time one.
        public let requestField: String?
        /// llama-server's option, as a model's `parameters` key (`ctx_size` for `--ctx-size`).
        public let parameter: String
        public let kind: Kind
        /// Whether it is fixed when the model loads (it picks the runner) rather than per request.
        public var loadTime: Bool { requestField == nil }
    }

    public static let all: [Option] = [
        Option(name: "temperature", requestField: "temperature", parameter: "temp", kind: .number),
        Option(name: "top_k", requestField: "top_k", parameter: "top_k", kind: .integer),
        Option(name: "top_p", requestField: "top_p", parameter: "top_p", kind: .number),
        Option(name: "min_p", requestField: "min_p", parameter: "min_p", kind: .number),
        Option(name: "typical_p", requestField: "typical_p", parameter: "typical", kind: .number),
        Option(name: "num_predict", requestField: "max_tokens", parameter: "n_predict", kind: .integer),
        Option(name: "seed", requestField: "seed", parameter: "seed", kind: .integer),
        Option(name: "repeat_penalty", requestField: "repeat_penalty", parameter: "repeat_penalty", kind: .number),
        Option(name: "repeat_last_n", requestField: "repeat_last_n", parameter: "repeat_last_n", kind: .integer),
        Option(name: "presence_penalty", requestField: "presence_penalty", parameter: "presence_penalty", kind: .number),
        Option(name: "frequency_penalty", requestField: "frequency_penalty", parameter: "frequency_penalty", kind: .number),
        Option(name: "num_keep", requestField: "n_keep", parameter: "keep", kind: .integer),
        Option(name: "mirostat", requestField: "mirostat", parameter: "mirostat", kind: .integer),
        Option(name: "mirostat_tau", requestField: "mirostat_tau", parameter: "mirostat_ent", kind: .number),
        Option(name: "mirostat_eta", requestField: "mirostat_eta", parameter: "mirostat_lr", kind: .number),
        Option(name: "num_ctx", requestField: nil, parameter: "ctx_size", kind: .integer),
        Option(name: "num_batch", requestField: nil, parameter: "batch_size", kind: .integer),
        Option(name: "num_thread", requestField: nil, parameter: "threads", kind: .integer),
        Option(name: "num_gpu", requestField: nil, parameter: "n_gpu_layers", kind: .integer),
    ]

    /// Ollama options llama-server has no model-level equivalent for: accepted and left out.
    public static let unsupported: Set<String> = ["stop", "penalize_newline", "numa", "main_gpu", "low_vram", "vocab_only", "tfs_z"]

    public static func option(_ name: String) -> Option? { all.first { $0.name == name } }

    /// The Ollama name of a model parameter (`ctx_size` → `num_ctx`), or the parameter's own.
    public static func ollamaName(ofParameter parameter: String) -> String {
        all.first { $0.parameter == parameter }?.name ?? parameter
    }

    /// A value of `option`'s type, or nil.
    public static func value(_ value: JSONValue, as kind: Kind) -> JSONValue? {
        guard let d = value.doubleValue else { return nil }
        switch kind {
        case .integer: return d.rounded() == d ? .int(Int(d)) : nil
        case .number: return .double(d)
        }
    }

    /// Ollama's model parameters (a Modelfile's `PARAMETER`s, `create`'s `parameters`, a params
    /// layer) as llama-server options. `use_mmap: false` and `use_mlock: true` become `no_mmap` and
    /// `mlock`; `unsupported` ones are listed in `ignored`; any other name, or a value of the wrong
    /// type, is an error naming it.
    public static func modelParameters(_ params: JSONObject) -> Result<(parameters: JSONObject, ignored: [String]), BadOption> {
        var out = JSONObject()
        var ignored: [String] = []
        for (key, raw) in params.entries {
            if let option = option(key) {
                guard let v = value(raw, as: option.kind) else {
                    return .failure(BadOption(message: "parameter \"\(key)\" must be of type \(option.kind == .integer ? "integer" : "float")"))
                }
                out[option.parameter] = v
            } else if key == "use_mmap" || key == "use_mlock" {
                guard let b = raw.boolValue else { return .failure(BadOption(message: "parameter \"\(key)\" must be of type boolean")) }
                if key == "use_mmap" { if !b { out["no_mmap"] = .bool(true) } } else if b { out["mlock"] = .bool(true) }
            } else if unsupported.contains(key) {
                ignored.append(key)
            } else {
                return .failure(BadOption(message: "unknown parameter \"\(key)\""))
            }
        }
        return .success((out, ignored))
    }

    public struct BadOption: Error, Sendable, Equatable { public let message: String }
}
