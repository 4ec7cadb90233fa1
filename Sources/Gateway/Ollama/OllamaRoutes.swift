import Shared

/// The Ollama surface on 11434. Today: the cheap constant endpoints clients probe first (the Go and
/// Python clients' heartbeat is `HEAD /`; Copilot gates on `/api/version`). Chat and the rest arrive
/// with issue 6.
enum OllamaRoutes {
    static let running = HTTPResponse.text("Ollama is running")
    static let version = HTTPResponse.json(Array("{\"version\":\"\(LlamaRunnerVersion.ollamaCompatible)\"}".utf8))

    static func register(on router: inout Router) {
        router.get("/") { _, _ in running }
        router.get("/api/version") { _, _ in version }
    }
}
