import Shared

/// In front of every port's router: the network boundary.
/// - `Host`: a name this port does not answer (`HostPolicy`, the DNS-rebinding guard) gets 403.
/// - `Origin`: a request from a page whose origin is not allowed (`OriginPolicy`) gets 403, preflight
///   or not, unless it presents the admin token (dashboard API only); allowed origins get
///   `Access-Control-Allow-*` and `OPTIONS` preflights 204. Requests without `Origin` (curl, SDKs)
///   are not browser requests and pass.
/// - `api_keys` set for the surface: `Authorization: Bearer <key>` or `x-api-key: <key>` is required,
///   compared in constant time; a missing or wrong key gets 401 in the surface's error shape.
///   `/health`, `GET /` and `/api/version` stay open (monitoring and heartbeats).
struct SurfaceGuard: HTTPHandler {
    let next: any HTTPHandler
    let keys: [String]
    let origins: OriginPolicy
    let hosts: HostPolicy
    /// The dashboard's admin token: a request that presents it may come from any origin.
    var adminToken: String? = nil
    /// Paths that authenticate by themselves (LM Studio's websocket, whose first message carries the
    /// key, and the probes its SDKs send before connecting): no API key at the HTTP layer.
    var openPaths: Set<String> = []
    let shape: @Sendable (Substring) -> ErrorShape

    static let allowHeaders = "Authorization, Content-Type, User-Agent, Accept, X-Requested-With, OpenAI-Beta, x-api-key, x-admin-token, x-stainless-os, x-stainless-lang, x-stainless-arch, x-stainless-runtime, x-stainless-runtime-version, x-stainless-package-version, x-stainless-retry-count, x-stainless-timeout, anthropic-version, anthropic-beta"

    func handle(_ request: HTTPRequest) async throws -> HTTPResponse {
        let host = request.headers["host"]
        guard hosts.allows(host) else {
            let name = host.map(HostPolicy.hostName) ?? ""
            return shape(request.path).response(.forbidden, "this server does not answer requests for host \"\(name)\" (a guard against DNS rebinding): use localhost or 127.0.0.1, or add \"\(name)\" to allowed_hosts in app_config.json", code: "host_not_allowed")
        }
        let origin = request.headers["origin"]
        if let origin, !origins.allows(origin, host: host), !presentsAdminToken(request) {
            return shape(request.path).response(.forbidden, "requests from the web origin \(origin) are not allowed: add it to cors_origins in app_config.json", code: "origin_not_allowed")
        }
        if request.method == "OPTIONS" {
            var r = HTTPResponse(status: .noContent)
            if let origin { addCORS(&r, origin: origin, preflight: true) }
            return r
        }
        if !keys.isEmpty && !isOpen(request) && !authorized(request) {
            var r = shape(request.path).response(.unauthorized, "a valid API key is required: send Authorization: Bearer <key> or x-api-key",
                                                 code: "invalid_api_key")
            r.headers.add("WWW-Authenticate", "Bearer")
            if let origin { addCORS(&r, origin: origin, preflight: false) }
            return r
        }
        var response: HTTPResponse
        do {
            response = try await next.handle(request)
        } catch let error as any HTTPResponseError {
            response = error.response(in: shape(request.path))
        } catch let error as HTTPError {
            response = APIError(error).response(in: shape(request.path))
        } catch is CancellationError {
            throw CancellationError()  // the client is gone: nothing to answer
        } catch {
            response = shape(request.path).response(.internalServerError, "internal error: \(error)")
        }
        if let origin { addCORS(&response, origin: origin, preflight: false) }
        return response
    }

    /// Whether the request carries the configured admin token (`Authorization: Bearer` or `x-admin-token`).
    func presentsAdminToken(_ request: HTTPRequest) -> Bool {
        guard let token = adminToken else { return false }
        return Self.adminToken(in: request).map { Self.constantTimeEquals(token, $0) } ?? false
    }

    static func adminToken(in request: HTTPRequest) -> String? {
        request.headers["x-admin-token"] ?? bearerToken(in: request)
    }

    /// The token of an `Authorization: Bearer <token>` header.
    static func bearerToken(in request: HTTPRequest) -> String? {
        guard let auth = request.headers["authorization"], auth.count > 7, auth.prefix(7).asciiCaseInsensitiveEquals("bearer ") else { return nil }
        return String(auth.dropFirst(7)).trimmingSpaces().description
    }

    func isOpen(_ r: HTTPRequest) -> Bool {
        r.path == "/health" || r.path == "/api/version" || (r.path == "/" && (r.method == "GET" || r.method == "HEAD"))
            || (r.method == "GET" && openPaths.contains(String(r.path)))
    }

    func authorized(_ r: HTTPRequest) -> Bool {
        guard let presented = Self.bearerToken(in: r) ?? r.headers["x-api-key"] else { return false }
        var match = false
        for key in keys where Self.constantTimeEquals(key, presented) { match = true }
        return match
    }

    static func constantTimeEquals(_ a: String, _ b: String) -> Bool { HMAC.constantTimeEqual(Array(a.utf8), Array(b.utf8)) }

    func addCORS(_ r: inout HTTPResponse, origin: String, preflight: Bool) {
        r.headers.set("Access-Control-Allow-Origin", origins.allowsEveryOrigin ? "*" : origin)
        if !origins.allowsEveryOrigin { r.headers.add("Vary", "Origin") }
        if preflight {
            r.headers.set("Access-Control-Allow-Methods", "GET, POST, PUT, DELETE, OPTIONS, HEAD")
            r.headers.set("Access-Control-Allow-Headers", Self.allowHeaders)
            r.headers.set("Access-Control-Max-Age", "600")
        }
        r.headers.set("Access-Control-Expose-Headers", "x-llama-runner-overhead-ms, x-llama-runner-load-ms, Retry-After")
    }
}
