import Shared

/// The declared shapes of `app_config.json` and `models_config.json` (and so of their JSON Schemas).
enum ConfigShapes {
    static let port = Shape.integer(min: 1, max: 65535)
    static let logLevel = Shape.oneOfStrings(["trace", "debug", "info", "warning", "error"])

    static let proxy = Shape.object([
        .init("enabled", .boolean, "serve this API"),
        .init("host", .nonEmptyString, "address to bind; 127.0.0.1 keeps it on this machine"),
        .init("port", port, required: true, "TCP port"),
        .init("api_keys", .array(.nonEmptyString), "when non-empty, requests need Authorization: Bearer <key> or x-api-key"),
        .init("stream_loading_progress", .boolean, "while a streamed request waits for its model to load, send the load's progress in the stream (OpenAI reasoning_content, Ollama thinking), ended before the answer (default false)"),
        .init("cors_origins", .array(.nonEmptyString), "origins allowed by CORS, as patterns (* matches anything; \"*\" alone allows every origin); default: the local origins Ollama allows (http(s)://localhost, 127.0.0.1, 0.0.0.0 on any port; app://, file://, tauri://, vscode-webview://)"),
    ], others: .warn)

    static let peer = Shape.object([
        .init("base_url", .pattern(.httpURL, hint: "an http:// or https:// URL"), required: true, "its root or its OpenAI base (…/v1); requests go to <base>/v1/…"),
        .init("api_key", .nonEmptyString, "sent to the peer as Authorization: Bearer (clients' own credentials are never forwarded)"),
        .init("models", .array(.nonEmptyString), "which of its models are offered, as patterns (* matches anything); default all"),
        .init("poll_interval_seconds", .number(min: 1), "seconds between reads of its model list, and so the longest a recovered peer is shown down (default 10)"),
    ], others: .warn)

    static let importSource = Shape.anyOf([.boolean, .nonEmptyString], hint: "true, false or a folder")

    static let app = Shape.object([
        .init("proxies", .object([
            .init("ollama", proxy, "the Ollama API (and OpenAI /v1), default port 11434"),
            .init("lmstudio", proxy, "the LM Studio API (and OpenAI /v1), default port 1234"),
        ], others: .warn), "the public API surfaces"),
        .init("dashboard", .object([
            .init("enabled", .boolean, "serve the dashboard and its API"),
            .init("host", .nonEmptyString, "address to bind"),
            .init("api_port", port, "dashboard API port (default 8585)"),
            .init("web_port", port, "web dashboard port (default 8080)"),
            .init("admin_token", .anyOf([.nonEmptyString, .null], hint: "a non-empty string or null"), "required for writes when set"),
            .init("web_root", .nonEmptyString, "folder of the web dashboard's files (default: the repository's dashboard/)"),
            .init("cors_origins", .array(.nonEmptyString), "origins allowed to call the dashboard API (patterns as for the proxies); default: the web dashboard's own"),
            .init("capture", .boolean, "keep the bodies of the last model requests and their answers in memory (at most 200, 64 KiB each, Authorization and API keys left out) for the Activity page's detail view (default false)"),
        ], others: .warn), "the dashboard"),
        .init("http", .object([
            .init("max_header_bytes", .integer(min: 1024), "request line and headers (431 beyond)"),
            .init("header_timeout_seconds", .number(min: 0.001), "first byte to end of headers"),
            .init("keep_alive_timeout_seconds", .number(min: 0.001), "idle time between requests"),
            .init("body_timeout_seconds", .number(min: 0.001), "longest pause inside a request body"),
            .init("websocket_max_message_bytes", .integer(min: 1024), "largest WebSocket message (LM Studio SDK protocol on the lmstudio port); larger ones close the connection with code 1009 (default 16 MiB)"),
            .init("websocket_ping_interval_seconds", .number(min: 0), "seconds of WebSocket silence before the server pings, and again before it drops the client (0 = never; default 30)"),
        ], others: .warn), "HTTP limits of the public ports"),
        .init("paths", .object([
            .init("models_dirs", .array(.nonEmptyString), "folders scanned for GGUF files (relative to the config directory)"),
            .init("state_dir", .nonEmptyString, "logs/ and run/ (relative to the config directory), when --state-dir is not given"),
            .init("import", .object([
                .init("ollama", importSource, "Ollama's models (default OLLAMA_MODELS or ~/.ollama/models)"),
                .init("lmstudio", importSource, "LM Studio's models folder (default ~/.lmstudio/models, or the older ~/.cache/lm-studio/models)"),
                .init("huggingface", importSource, "the Hugging Face hub cache (default HF_HUB_CACHE, HF_HOME/hub or ~/.cache/huggingface/hub)"),
                .init("llama_cpp", importSource, "llama.cpp's own cache (default LLAMA_CACHE or ~/.cache/llama.cpp)"),
            ], others: .warn), "other tools' caches indexed in place, read-only: each true (its default folder), false (off) or a folder"),
        ], others: .warn), "folders"),
        .init("runtimes", .object([], others: .map(.object([
            .init("kind", .oneOfStrings(RuntimeKind.allCases.map(\.rawValue)), required: true, "what the binary is"),
            .init("path", .nonEmptyString, required: true, "the executable: a path, or a name on PATH"),
        ], others: .warn), keyPattern: nil, keyHint: "")), "named model server binaries"),
        .init("limits", .object([
            .init("max_loaded_models", .integer(min: 1), "models loaded at once"),
            .init("memory_budget", .anyOf([.integer(min: 0), .pattern(.percentage, hint: "a percentage")],
                                          hint: "a number of bytes or a percentage such as \"80%\""), "memory models may use, on each device: bytes, or a share of its total (system RAM for the CPU, each GPU's own memory)"),
            .init("gpu_overhead_bytes", .integer(min: 0), "bytes kept free on every GPU for other programs, taken off its budget (default 0)"),
            .init("default_ttl_seconds", .integer(min: -1), "idle seconds before a model unloads (-1 = never)"),
            .init("queue_size", .integer(min: 1), "requests waiting per model"),
            .init("request_body_bytes", .integer(min: 1024), "largest request body (413 beyond)"),
            .init("unload_timeout_seconds", .integer(min: 1), "SIGTERM to SIGKILL when stopping a runner"),
            .init("swap_policy", .oneOfStrings(AppConfig.SwapPolicyName.allCases.map(\.rawValue)), "when more models are wanted than fit: \"batch\" serves a loaded model's queued requests before swapping, for at most max_wait_seconds; \"fifo\" swaps in arrival order"),
            .init("max_wait_seconds", .number(min: 0), "longest a request waits for room because a loaded model keeps serving its own queue (batch policy)"),
            .init("resident_idle_seconds", .number(min: 0), "idle seconds after which resident_model is loaded again"),
            .init("slot_cache_bytes", .integer(min: 0), "disk for runners' saved conversations (state/slots), restored when the model loads again; oldest files go first; 0 = off (default 2 GiB)"),
            .init("stop_abandoned_loads", .boolean, "stop a load whose every client left when another model waits for its room (default true)"),
            .init("download_reserve_bytes", .integer(min: 0), "bytes a pull must leave free on the models folder's disk; a pull that would not is refused before it starts (default 1 GiB)"),
        ], others: .warn), "scheduling limits"),
        .init("hub", .object([
            .init("endpoint", .nonEmptyString, "the Hugging Face Hub or a mirror that pulls download from (the HF_ENDPOINT environment variable overrides it; default https://huggingface.co)"),
        ], others: .warn), "model downloads"),
        .init("hardware", .object([
            .init("nvml", .boolean, "read NVIDIA GPUs through NVML (libnvidia-ml.so.1) when it loads (default true; false: nvidia-smi only)"),
            .init("nvidia_smi", .string, "nvidia-smi to run when NVML cannot be used: a path or a name on PATH; \"\" = never (default nvidia-smi)"),
            .init("sysfs_root", .nonEmptyString, "where AMD GPUs are read from (<root>/class/drm/card*/device; default /sys)"),
            .init("sample_interval_seconds", .number(min: 0.1), "seconds between samples of every device (default 2)"),
        ], others: .warn), "GPU and memory inventory"),
        .init("peers", .object([], others: .map(peer, keyPattern: .peerName, keyHint: "a peer name: letters, digits, '.', '_' or '-'")),
              "other OpenAI-compatible servers (another Llama Runner, llama-swap, vLLM, llama-server) whose models are offered here as <name>/<model>"),
        .init("runner_host", .object([
            .init("host", .nonEmptyString, required: true, "the address runner-manager's control plane and its runners bind: this machine's address on the gateway's network"),
            .init("port", port, "the control plane's TCP port (default 7070)"),
            .init("secret_file", .nonEmptyString, required: true, "file holding the shared secret the gateway must prove (at least 16 bytes, not readable by other users; relative to the config directory)"),
            .init("advertise_host", .nonEmptyString, "the address the gateway reaches the runners at, when host is 0.0.0.0 or ::"),
            .init("name", .nonEmptyString, "this host's name in the gateway's listings (default the machine's host name)"),
        ], others: .warn), "serve another machine's gateway: runner-manager listens on TCP (authenticated) and its runners on host, each with its own API key"),
        .init("hosts", .object([], others: .map(.object([
            .init("address", .nonEmptyString, required: true, "host:port of that machine's runner_host"),
            .init("secret_file", .nonEmptyString, required: true, "file holding the same secret as that host's runner_host.secret_file (relative to the config directory)"),
            .init("discover", .boolean, "every address the address's name resolves to is a host of its own, <name>@<address>, looked up again every 10 s (a Kubernetes headless Service; default false)"),
        ], others: .warn), keyPattern: .peerName, keyHint: "a host name: letters, digits, '.', '_' or '-'")),
              "other machines' runner-managers this gateway places models on, besides its own (\"local\"); a change applies at once"),
        .init("discovery_interval_seconds", .integer(min: 0), "seconds between scans of the models folders (0 = off)"),
        .init("log_levels", .object([], others: .map(logLevel, keyPattern: nil, keyHint: "")), "per service, and \"default\""),
        .init("resident_model", .anyOf([.pattern(.modelID, hint: "a model id"), .null], hint: "a model id or null"), "a model kept loaded: at start, and again once the machine is idle after others displaced it"),
        .init("allowed_hosts", .array(.nonEmptyString), "Host header names accepted beyond localhost, *.localhost, this machine's name and loopback addresses (\"*.example.com\" for a domain); on a non-loopback bind, when set, only these and IP addresses"),
    ], others: .warn)

    /// Parameters whose type llama-server fixes; others pass through as given.
    static let knownParameters: [(String, Shape)] = [
        ("ctx_size", .integer(min: 0)), ("n_gpu_layers", .integer(min: -1)), ("gpu_layers", .integer(min: -1)),
        ("threads", .integer(min: -1)), ("threads_batch", .integer(min: -1)), ("parallel", .integer(min: 1)),
        ("batch_size", .integer(min: 1)), ("ubatch_size", .integer(min: 1)), ("n_predict", .integer(min: -1)),
        ("seed", .integer(min: -1)), ("top_k", .integer(min: 0)),
        ("temp", .number(min: 0)), ("top_p", .number(min: 0)), ("min_p", .number(min: 0)),
        ("repeat_penalty", .number(min: 0)), ("rope_freq_base", .number(min: 0)), ("rope_freq_scale", .number(min: 0)),
        ("embeddings", .boolean), ("embedding", .boolean), ("mlock", .boolean), ("no_mmap", .boolean), ("jinja", .boolean),
        ("cont_batching", .boolean), ("flash_attn", .anyOf([.boolean, .oneOfStrings(["on", "off", "auto"])], hint: "true, false, \"on\", \"off\" or \"auto\"")),
        ("cache_type_k", .nonEmptyString), ("cache_type_v", .nonEmptyString), ("chat_template", .string), ("alias", .string),
    ]

    static let otherParameter = Shape.anyOf([.string, .number(min: nil), .boolean, .null, .array(.anyOf([.string, .number(min: nil)], hint: "a string or number"))],
                                            hint: "a string, number, boolean, null or an array of strings and numbers")

    static let parameters = Shape.object(knownParameters.map { Shape.Field($0.0, $0.1, "llama-server --\($0.0.replacingUnderscores)") },
                                         others: .map(otherParameter, keyPattern: .optionName, keyHint: "a llama-server option name in lower case"))

    static let model = Shape.object([
        .init("model_path", .nonEmptyString, required: true, "the GGUF file (first shard of a split model), relative to the config directory"),
        .init("llama_cpp_runtime", .nonEmptyString, "a runtime name from app_config.json (default \"llama-server\")"),
        .init("parameters", parameters, "llama-server options; they win over default_parameters"),
        .init("auto_discovered", .boolean, "added by discovery"),
        .init("auto_update_model", .boolean, "discovery may update model_path when the file moves"),
        .init("aliases", .array(.pattern(.modelID, hint: "a name without spaces or quotes")), "other names for this model"),
        .init("display_name", .nonEmptyString, "name shown in lists"),
        .init("ttl_seconds", .integer(min: -1), "idle seconds before unloading (-1 = never)"),
        .init("pinned", .boolean, "never evicted for another model and never unloaded when idle (it counts against the limits)"),
        .init("preload", .boolean, "loaded when runner-manager starts, and again after a crash"),
        .init("unlisted", .boolean, "hidden from model lists, still routable"),
        .init("mmproj", .nonEmptyString, "multimodal projector file"),
        .init("devices", .array(.nonEmptyString), "the devices it runs on: GPU UUIDs or PCI addresses from GET /api/hardware, or \"cpu\"; default: the GPU with the most free memory"),
        .init("min_ctx_size", .integer(min: 0), "smallest context a load that runs out of memory may shrink to (default: the context asked for, i.e. no shrinking)"),
        .init("allow_cpu_fallback", .boolean, "a model that fits on no GPU runs on the CPU (default false)"),
        .init("kind", .oneOfStrings(ModelKind.allCases.map(\.rawValue)), "what the model serves"),
        .init("system_prompt", .string, "the system prompt of chats that bring none (Ollama's SYSTEM)"),
        .init("template", .string, "Ollama's prompt template, shown by /api/show (chats use the GGUF's own template)"),
        .init("source", .object([
            .init("type", .oneOfStrings(ModelSource.allCases.map(\.rawValue)), required: true, "folder, hub (pulled), created, or another tool's cache"),
            .init("endpoint", .nonEmptyString, "the hub a pull came from"),
            .init("repo", .nonEmptyString, "the hub repository (user/repo)"),
            .init("commit", .nonEmptyString, "the repository's commit the files are from"),
            .init("files", .array(.nonEmptyString), "the files a pull downloaded (deleting the model deletes them)"),
        ], others: .warn), "where the model comes from; recorded by pulls"),
    ], others: .warn)

    static let models = Shape.object([
        .init("default_model", .anyOf([.nonEmptyString, .null], hint: "a model id or null"), "used when a request names no model"),
        .init("default_parameters", parameters, "parameters for every model"),
        .init("models", .object([], others: .map(model, keyPattern: .modelID, keyHint: "an id without spaces or quotes")), "models by id"),
    ], others: .warn)

    /// The committed schema files' content.
    static func schema(_ shape: Shape, title: String, id: String) -> JSONValue {
        guard case .object(var o) = shape.jsonSchema() else { return .null }
        var head = JSONObject([("$schema", .string("https://json-schema.org/draft/2020-12/schema")),
                               ("$id", .string(id)), ("title", .string(title))])
        for (k, v) in o.entries { head[k] = v }
        o = head
        return .object(o)
    }
}

extension String {
    var replacingUnderscores: String { String(map { $0 == "_" ? "-" : $0 }) }
}

/// Validation of both files together: each against its shape, then the rules that span entries and
/// files (aliases, default model, runtimes).
enum ConfigValidator {
    static func validate(app: JSONValue, models: JSONValue) -> [ConfigIssue] {
        var issues: [ConfigIssue] = []
        ConfigShapes.app.validate(app, at: JSONPath(), file: "app_config.json", into: &issues)
        ConfigShapes.models.validate(models, at: JSONPath(), file: "models_config.json", into: &issues)
        guard let entries = models["models"]?.objectValue else { return issues }

        let runtimeNames = Set(app["runtimes"]?.objectValue?.keys ?? Array(AppConfig.defaultRuntimes.keys))
        var aliasOwner: [String: String] = [:]
        let ids = Set(entries.keys)
        for (id, entry) in entries.entries {
            let path = JSONPath().appending("models").appending(id)
            if let runtime = entry["llama_cpp_runtime"]?.stringValue ?? (entry.objectValue != nil ? "llama-server" : nil),
               !runtimeNames.contains(runtime) {
                let known = runtimeNames.sorted().map { "\"\($0)\"" }.joined(separator: ", ")
                issues.append(ConfigIssue(file: "models_config.json", path: path.appending("llama_cpp_runtime").description,
                                          message: "runtime \"\(runtime)\" is not defined in app_config.json runtimes (defined: \(known.isEmpty ? "none" : known))",
                                          severity: .error))
            }
            for (i, alias) in (entry["aliases"]?.arrayValue ?? []).enumerated() {
                guard let alias = alias.stringValue else { continue }
                let aliasPath = path.appending("aliases").index(i).description
                if ids.contains(alias) && alias != id {
                    issues.append(ConfigIssue(file: "models_config.json", path: aliasPath,
                                              message: "alias \"\(alias)\" is the id of another model", severity: .error))
                } else if let owner = aliasOwner[alias] {
                    issues.append(ConfigIssue(file: "models_config.json", path: aliasPath,
                                              message: owner == id ? "alias \"\(alias)\" is listed twice"
                                                                   : "alias \"\(alias)\" is also an alias of \"\(owner)\"", severity: .error))
                } else {
                    aliasOwner[alias] = id
                }
            }
        }
        if let name = app["resident_model"]?.stringValue, !ids.contains(name), aliasOwner[name] == nil {
            issues.append(ConfigIssue(file: "app_config.json", path: "resident_model",
                                      message: "model \"\(name)\" does not exist (\(ids.isEmpty ? "no models are defined" : "models: " + ids.sorted().joined(separator: ", ")))",
                                      severity: .error))
        }
        // Pinned models are never evicted: more of them than may be loaded at once could never all run.
        let pinned = entries.entries.filter { $0.value["pinned"]?.boolValue == true }.map(\.key).sorted()
        let maxLoaded = app["limits"]?["max_loaded_models"]?.intValue ?? AppConfig.Limits().maxLoadedModels
        if pinned.count > maxLoaded {
            issues.append(ConfigIssue(file: "models_config.json", path: "models",
                                      message: "\(pinned.count) models are pinned (\(pinned.joined(separator: ", "))) but limits.max_loaded_models is \(maxLoaded): unpin some or raise the limit",
                                      severity: .error))
        }
        if let name = models["default_model"]?.stringValue, !ids.contains(name), aliasOwner[name] == nil {
            issues.append(ConfigIssue(file: "models_config.json", path: "default_model",
                                      message: "model \"\(name)\" does not exist (\(ids.isEmpty ? "no models are defined" : "models: " + ids.sorted().joined(separator: ", ")))",
                                      severity: .error))
        }
        return issues
    }
}
