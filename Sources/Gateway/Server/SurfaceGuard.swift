import Shared

/// In front of a surface's router: API keys and CORS.
/// - `api_keys` set for the surface: `Authorization: Bearer <key>` or `x-api-key: <key>` is required,
///   compared in constant time; a missing or wrong key gets 401 in the surface's error shape.
///   `/health`, `GET /` and `/api/version` stay open (monitoring and heartbeats).
/// - CORS: allowed origins are answered with `Access-Control-Allow-*` and `OPTIONS` preflights get 204.
///   Default: every origin on a loopback bind, none otherwise (reference/api-compat.md §1.1).
struct SurfaceGuard: HTTPHandler {
    let next: Router
    let keys: [String]
    let corsOrigins: [String]
    let shape: @Sendable (Substring) -> ErrorShape

    static let allowHeaders = "Authorization, Content-Type, User-Agent, Accept, X-Requested-With, OpenAI-Beta, x-api-key, x-stainless-os, x-stainless-lang, x-stainless-arch, x-stainless-runtime, x-stainless-runtime-version, x-stainless-package-version, x-stainless-retry-count, x-stainless-timeout, anthropic-version, anthropic-beta"

    static func defaultOrigins(host: String) -> [String] {
        host == "127.0.0.1" || host == "localhost" || host == "::1" ? ["*"] : []
    }

    func handle(_ request: HTTPRequest) async throws -> HTTPResponse {
        let origin = request.headers["origin"]
        let allowed = origin.flatMap { o in corsOrigins.contains("*") || corsOrigins.contains(o) ? o : nil }
        if request.method == "OPTIONS" {
            var r = HTTPResponse(status: .noContent)
            if let allowed { addCORS(&r, origin: allowed, preflight: true) }
            return r
        }
        if !keys.isEmpty && !isOpen(request) && !authorized(request) {
            var r = shape(request.path).response(.unauthorized, "a valid API key is required: send Authorization: Bearer <key> or x-api-key",
                                                 code: "invalid_api_key")
            r.headers.add("WWW-Authenticate", "Bearer")
            if let allowed { addCORS(&r, origin: allowed, preflight: false) }
            return r
        }
        var response = try await next.handle(request)
        if let allowed { addCORS(&response, origin: allowed, preflight: false) }
        return response
    }

    func isOpen(_ r: HTTPRequest) -> Bool {
        r.path == "/health" || r.path == "/api/version" || (r.path == "/" && (r.method == "GET" || r.method == "HEAD"))
    }

    func authorized(_ r: HTTPRequest) -> Bool {
        var presented: String?
        if let auth = r.headers["authorization"], auth.count > 7, auth.prefix(7).asciiCaseInsensitiveEquals("bearer ") {
            presented = String(auth.dropFirst(7)).trimmingSpaces().description
        } else if let key = r.headers["x-api-key"] {
            presented = key
        }
        guard let presented else { return false }
        var match = false
        for key in keys where Self.constantTimeEquals(key, presented) { match = true }
        return match
    }

    static func constantTimeEquals(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8), y = Array(b.utf8)
        var diff = x.count ^ y.count
        for i in 0..<max(x.count, y.count) { diff |= Int((i < x.count ? x[i] : 0) ^ (i < y.count ? y[i] : 0)) }
        return diff == 0
    }

    func addCORS(_ r: inout HTTPResponse, origin: String, preflight: Bool) {
        r.headers.set("Access-Control-Allow-Origin", corsOrigins.contains("*") ? "*" : origin)
        if !corsOrigins.contains("*") { r.headers.add("Vary", "Origin") }
        if preflight {
            r.headers.set("Access-Control-Allow-Methods", "GET, POST, PUT, DELETE, OPTIONS, HEAD")
            r.headers.set("Access-Control-Allow-Headers", Self.allowHeaders)
            r.headers.set("Access-Control-Max-Age", "600")
        }
        r.headers.set("Access-Control-Expose-Headers", "x-llama-runner-overhead-ms, x-llama-runner-load-ms, Retry-After")
    }
}
