import Shared

/// The cheap constant endpoints of the Ollama surface on 11434, which clients probe first (the Go and
/// Python clients' heartbeat is `HEAD /`; Copilot gates on `/api/version`). The rest is `OllamaAPI`.
enum OllamaRoutes {
    static let running = HTTPResponse.text("Ollama is running")
    /// The version the Ollama surface reports on `/api/version`: clients gate features on it
    /// (VS Code Copilot refuses anything below 0.6.4).
    static let ollamaVersion = "0.12.6"
    static let version = HTTPResponse.json(Array("{\"version\":\"\(ollamaVersion)\"}".utf8))

    static func register(on router: inout Router) {
        router.get("/") { _, _ in running }
        router.get("/api/version") { _, _ in version }
    }
}
