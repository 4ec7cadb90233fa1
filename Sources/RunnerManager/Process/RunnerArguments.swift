import Shared

/// The command line of a runner, built from the model's merged parameters: each becomes
/// `--key-with-dashes value` (true → a bare flag, false/null → omitted, arrays comma-joined), then
/// `--mmproj`, then the host and port runner-manager chose. A user's own `host`/`port` never reach
/// argv (the manager owns the endpoint), and nothing goes through a shell. whisper-server runners get
/// `--inference-path /v1/audio/transcriptions`, the path the gateway relays uploads to.
enum RunnerArguments {
    /// Parameters the manager sets itself, or that mean nothing to the runner.
    static let reserved: Set<String> = ["host", "port", "model", "m", "mmproj", "alias", "api_key", "api-key",
                                        "inference_path", "inference-path", "request_path", "request-path"]
    static let whisperInferencePath = "/v1/audio/transcriptions"

    static func build(_ model: ResolvedModel, host: String, port: UInt16) -> [String] {
        loadArguments(model) + ["--host", host, "--port", String(port)]
    }

    /// Everything but the endpoint: what decides whether a running instance fits a request.
    static func loadArguments(_ model: ResolvedModel) -> [String] {
        var argv = ["--model", model.path]
        for (key, value) in model.parameters.objectValue?.entries ?? [] {
            let name = key.lowercased()
            guard !reserved.contains(name) else { continue }
            let flag = "--" + name.replacingOccurrences(of: "_", with: "-")
            switch value {
            case .bool(true): argv.append(flag)
            case .bool(false), .null: continue
            case .array(let items): argv += [flag, items.map(render).joined(separator: ",")]
            default: argv += [flag, render(value)]
            }
        }
        if let mmproj = model.mmproj { argv += ["--mmproj", mmproj] }
        // Responses then name the model as clients know it, not by its file path.
        if model.runtimeKind == .llamaServer { argv += ["--alias", model.id] }
        if model.runtimeKind == .whisperServer { argv += ["--inference-path", whisperInferencePath] }
        return argv
    }

    static func render(_ v: JSONValue) -> String {
        switch v {
        case .string(let s): s
        case .int(let i): String(i)
        case .double(let d): d.rounded() == d && abs(d) < 1e15 ? String(Int(d)) : "\(d)"
        case .bool(let b): b ? "true" : "false"
        default: JSONWriter.write(v, pretty: false)
        }
    }

    /// A stable hash of the runtime and its load arguments.
    static func fingerprint(_ model: ResolvedModel) -> String {
        // Unpadded hex, as runners.json has always recorded it (a changed form would stop every
        // recorded runner from being adopted once).
        String(FNV1a.hash(([model.runtimePath] + loadArguments(model)).joined(separator: "\u{0}").utf8), radix: 16)
    }

    /// How many requests a runner serves at once: its `--parallel`, or 4; whisper-server transcribes one
    /// upload at a time (the others queue in the scheduler, not in its socket backlog).
    static func concurrency(_ model: ResolvedModel) -> Int {
        if model.runtimeKind == .whisperServer { return 1 }
        let p = model.parameters["parallel"]?.intValue ?? model.parameters["np"]?.intValue ?? 4
        return max(1, p)
    }

    /// Memory a runner will take (`ModelMemory.estimate`).
    static func memoryEstimate(_ model: ResolvedModel) -> Int {
        ModelMemory.estimate(metadata: model.metadata, parameters: model.parameters,
                             whisperFileSize: model.runtimeKind == .whisperServer ? FileStamp.of(model.path)?.size ?? 0 : nil)
    }
}

extension String {
    func replacingOccurrences(of a: String, with b: String) -> String {
        split(separator: Character(a), omittingEmptySubsequences: false).joined(separator: b)
    }
}
