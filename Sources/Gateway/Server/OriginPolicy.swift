import Shared

/// Which web origins may call a port from a browser (CORS), and so which may drive it at all: a
/// request that carries an `Origin` not allowed here is refused (403), as real Ollama's CORS
/// middleware does, because a browser sends "simple" cross-site requests (form posts, `text/plain`)
/// without asking first.
struct OriginPolicy: Sendable {
    /// Origin patterns: `*` matches any run of characters; `"*"` alone allows every origin.
    let patterns: [String]
    /// The web dashboard's port: an origin on the same host name as the request, on this port, is the
    /// dashboard itself (so it works on a non-loopback bind too, whatever name the browser used).
    let dashboardWebPort: UInt16?

    /// What real Ollama allows by default (its `OLLAMA_ORIGINS` defaults): pages served from this
    /// machine, and the schemes of desktop and editor apps.
    static let localOrigins: [String] = ["localhost", "127.0.0.1", "0.0.0.0"].flatMap { host in
        ["http://\(host)", "https://\(host)", "http://\(host):*", "https://\(host):*"]
    } + ["app://*", "file://*", "tauri://*", "vscode-webview://*", "vscode-file://*"]

    /// The dashboard's own origins on a loopback bind (the same-host rule covers every other name).
    static func dashboardOrigins(webPort: UInt16) -> [String] {
        ["localhost", "127.0.0.1", "[::1]"].flatMap { ["http://\($0):\(webPort)", "https://\($0):\(webPort)"] }
    }

    var allowsEveryOrigin: Bool { patterns.contains("*") }

    /// Whether `origin`, sent with a request whose Host header is `host`, is allowed.
    func allows(_ origin: String, host: String?) -> Bool {
        if patterns.contains(where: { Self.matches(origin, $0) }) { return true }
        if let port = dashboardWebPort, let host {
            let name = HostPolicy.hostName(host)
            let shown = name.contains(":") ? "[\(name)]" : name
            return origin.lowercased() == "http://\(shown):\(port)" || origin.lowercased() == "https://\(shown):\(port)"
        }
        return false
    }

    /// Glob match, case-insensitive, `*` for any run of characters.
    static func matches(_ text: String, _ pattern: String) -> Bool { GlobPattern.matches(pattern, text, ignoringCase: true) }
}
