import Shared

/// The namespaces of LM Studio's SDK protocol: one websocket each, at `ws://host:port/<namespace>`.
enum SDKNamespace: String, Sendable, CaseIterable {
    case llm, embedding, system, files, repository, diagnostics, runtime, plugins

    /// The model type this namespace works with (`llm`, `embedding`), for those that have models.
    var modelType: String? {
        switch self {
        case .llm: "llm"
        case .embedding: "embedding"
        default: nil
        }
    }
}

/// An error in LM Studio's serialized form (`SerializedLMSExtendedError`): a title, an optional cause
/// and suggestion, and `displayData` that lets the SDKs raise their own error types (the Python SDK
/// maps `generic.noModelMatchingQuery` to `LMStudioModelNotFoundError`). Built from this gateway's
/// errors at the edge, as every surface's error shape is.
struct SDKError: Error, Sendable, Equatable {
    var title: String
    var cause: String?
    var suggestion: String?
    var displayData: JSONValue?

    init(title: String, cause: String? = nil, suggestion: String? = nil, displayData: JSONValue? = nil) {
        self.title = title
        self.cause = cause
        self.suggestion = suggestion
        self.displayData = displayData
    }

    static func invalidParameter(_ message: String) -> SDKError {
        SDKError(title: "Invalid parameter: \(message)")
    }

    /// The SDKs' own "no model matching" error (JS also needs the sample of loaded models).
    static func noModelMatching(_ query: String, loaded: [String], available: [String], cause: String? = nil) -> SDKError {
        let display = JSONObject([
            ("code", .string("generic.noModelMatchingQuery")),
            ("query", .object(JSONObject([("identifier", .string(query))]))),
            ("loadedModelsSample", .array(loaded.prefix(10).map(JSONValue.string))),
            ("totalLoadedModels", .int(loaded.count)),
        ])
        return SDKError(title: "No model found that matches the query \"\(query)\"", cause: cause,
                        suggestion: available.isEmpty ? "Put GGUF files in the models folder" : "Models here: \(available.joined(separator: ", "))",
                        displayData: .object(display))
    }

    /// The gateway's own error (from acquiring or calling a runner) in this form.
    init(_ error: APIError, doing action: String) {
        self.init(title: "\(action) failed: \(error.message)")
    }

    var json: JSONValue {
        var o = JSONObject([("title", .string(title))])
        if let cause { o["cause"] = .string(cause) }
        if let suggestion { o["suggestion"] = .string(suggestion) }
        if let displayData { o["displayData"] = displayData }
        o["rootTitle"] = .string(title)
        return .object(o)
    }
}

/// The envelopes the server sends (LM Studio's `Transport` messages, server to client).
enum SDKEnvelope {
    static func rpcResult(_ callId: Int, _ result: JSONValue?) -> JSONValue {
        var o = JSONObject([("type", .string("rpcResult")), ("callId", .int(callId))])
        // A void result leaves `result` out: the JS SDK's z.void() rejects null.
        if let result { o["result"] = result }
        return .object(o)
    }

    static func rpcError(_ callId: Int, _ error: SDKError) -> JSONValue {
        .object(JSONObject([("type", .string("rpcError")), ("callId", .int(callId)), ("error", error.json)]))
    }

    static func channelSend(_ channelId: Int, _ message: JSONValue) -> JSONValue {
        .object(JSONObject([("type", .string("channelSend")), ("channelId", .int(channelId)), ("message", message)]))
    }

    static func channelClose(_ channelId: Int) -> JSONValue {
        .object(JSONObject([("type", .string("channelClose")), ("channelId", .int(channelId))]))
    }

    static func channelError(_ channelId: Int, _ error: SDKError) -> JSONValue {
        .object(JSONObject([("type", .string("channelError")), ("channelId", .int(channelId)), ("error", error.json)]))
    }

    static func communicationWarning(_ warning: String) -> JSONValue {
        .object(JSONObject([("type", .string("communicationWarning")), ("warning", .string(warning))]))
    }

    /// A packet on a channel: `{"type": type, …fields}`.
    static func packet(_ type: String, _ fields: [(String, JSONValue)] = []) -> JSONValue {
        .object(JSONObject([("type", .string(type))] + fields))
    }
}
