import Shared

/// LM Studio's SDK protocol on port 1234, what the official Python and JS SDKs (and `lms`, and the
/// editor plugins built on them) speak: the HTTP probes they send first, and one websocket per
/// namespace (`/llm`, `/embedding`, `/system`, `/files`, `/repository`, and the JS SDK's extra ones),
/// each an `SDKSession`.
///
/// The websocket does its own authentication (its first message carries the client's key), so its
/// paths and the probes are open at the HTTP layer (`openPaths`); the Host and Origin checks still
/// apply, so a web page cannot open one.
struct LMStudioSDK: Sendable {
    let backend: LMStudioBackend
    /// `proxies.lmstudio.api_keys`: empty accepts every client; otherwise an `sk-lm-…` token must match one.
    let apiKeys: [String]
    let websocket: WebSocket.Configuration
    let logger: Logger

    /// Paths served without an API key at the HTTP layer.
    static let openPaths: Set<String> = Set(["/lmstudio-greeting", "/lms-status"] + SDKNamespace.allCases.map { "/" + $0.rawValue })

    func register(on router: inout Router) {
        // The probe every SDK sends before it connects: `lmstudio` must be true (the JS SDK and `lms`
        // compare with === true).
        router.get("/lmstudio-greeting") { _, _ in
            OllamaAPI.json(.object(JSONObject([("lmstudio", .bool(true)), ("server", .string("llama-runner")),
                                                ("version", .string(LlamaRunnerVersion.current))])))
        }
        // `lms` looks for a local server with this.
        router.get("/lms-status") { _, _ in
            OllamaAPI.json(.object(JSONObject([("package", .string("llama-runner")), ("version", .string(LlamaRunnerVersion.current)),
                                                ("running", .bool(true))])))
        }
        for namespace in SDKNamespace.allCases {
            router.get("/" + namespace.rawValue) { request, _ in
                let sdk = self
                if case .failure(let error) = WebSocketHandshake.check(request.head) {
                    throw APIError(error.status, "\(error.message) (the LM Studio SDK protocol's \(namespace.rawValue) namespace)",
                                   headers: error.status == .upgradeRequired ? ["Upgrade": "websocket", "Sec-WebSocket-Version": "13"] : HTTPHeaders())
                }
                return WebSocketHandshake.response(to: request, configuration: websocket) { socket in
                    await SDKSession(namespace: namespace, socket: socket, sdk: sdk).run()
                }
            }
        }
    }

    /// Checks the first message of a connection (`{"authVersion":1,"clientIdentifier","clientPasskey"}`).
    /// The SDKs split an API token `sk-lm-<8>:<20>` into identifier and passkey; with keys configured,
    /// the token they make up (or the passkey alone, for clients that send a plain key) must be one of
    /// them. Returns the client's identifier, or why it was refused.
    func authenticate(_ message: JSONValue?) -> Result<String, SDKAuthFailure> { Self.authenticate(message, apiKeys: apiKeys) }

    static func authenticate(_ message: JSONValue?, apiKeys: [String]) -> Result<String, SDKAuthFailure> {
        guard let message, message["authVersion"]?.intValue == 1 else {
            return .failure(SDKAuthFailure("the first message must be the authentication message {\"authVersion\":1,\"clientIdentifier\",\"clientPasskey\"}"))
        }
        guard let identifier = message["clientIdentifier"]?.stringValue, let passkey = message["clientPasskey"]?.stringValue,
              identifier.utf8.count <= 256, passkey.utf8.count <= 256 else {
            return .failure(SDKAuthFailure("clientIdentifier and clientPasskey must be strings of at most 256 characters"))
        }
        if apiKeys.isEmpty { return .success(identifier) }
        let token = "sk-lm-\(identifier):\(passkey)"
        var match = false
        for key in apiKeys where SurfaceGuard.constantTimeEquals(key, token) || SurfaceGuard.constantTimeEquals(key, passkey) { match = true }
        return match ? .success(identifier)
            : .failure(SDKAuthFailure("Invalid API token: this server requires one of its API keys (proxies.lmstudio.api_keys); pass it to the client as api_token (sk-lm-…)"))
    }
}

/// Why a websocket client was not let in.
struct SDKAuthFailure: Error, Sendable {
    let message: String
    init(_ message: String) { self.message = message }
}
