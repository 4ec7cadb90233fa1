/// Routes requests by method and path. Exact paths are a dictionary lookup; patterns with `{name}`
/// segments are matched in registration order. Unknown paths go to `fallback` (404 by default);
/// a known path with another method gets 405 with `Allow`.
public struct Router: HTTPHandler {
    public typealias Handler = @Sendable (HTTPRequest, RouteParameters) async throws -> HTTPResponse

    struct PatternRoute: Sendable {
        let method: String
        let segments: [Substring]
        let handler: Handler
    }

    private var exact: [String: [String: Handler]] = [:]
    private var patterns: [PatternRoute] = []
    /// Answers requests no route matches.
    public var fallback: @Sendable (HTTPRequest) async throws -> HTTPResponse = { _ in .text("not found\n", status: .notFound) }
    /// Shapes the 405 answer; the default is plain text.
    public var methodNotAllowed: @Sendable (HTTPRequest, [String]) -> HTTPResponse = { _, allowed in
        var r = HTTPResponse.text("method not allowed\n", status: .methodNotAllowed)
        r.headers.set("Allow", allowed.joined(separator: ", "))
        return r
    }

    public init() {}

    /// Adds a route. `path` may contain `{name}` segments; a final `{name...}` takes the rest.
    public mutating func on(_ method: String, _ path: String, _ handler: @escaping Handler) {
        if path.contains("{") {
            patterns.append(PatternRoute(method: method, segments: path.split(separator: "/"), handler: handler))
        } else {
            exact[path, default: [:]][method] = handler
            if method == "GET" && exact[path]?["HEAD"] == nil { exact[path]!["HEAD"] = handler }
        }
    }

    public mutating func get(_ path: String, _ handler: @escaping Handler) { on("GET", path, handler) }
    public mutating func post(_ path: String, _ handler: @escaping Handler) { on("POST", path, handler) }
    public mutating func put(_ path: String, _ handler: @escaping Handler) { on("PUT", path, handler) }
    public mutating func delete(_ path: String, _ handler: @escaping Handler) { on("DELETE", path, handler) }

    public func handle(_ request: HTTPRequest) async throws -> HTTPResponse {
        let path = request.path
        if let byMethod = exact[String(path)] {
            if let h = byMethod[request.method] { return try await h(request, RouteParameters()) }
            return methodNotAllowed(request, byMethod.keys.sorted())
        }
        let segments = path.split(separator: "/")
        var allowed: [String] = []
        for route in patterns {
            guard let params = match(route.segments, segments) else { continue }
            if route.method == request.method || (route.method == "GET" && request.method == "HEAD") {
                return try await route.handler(request, params)
            }
            allowed.append(route.method)
        }
        if !allowed.isEmpty { return methodNotAllowed(request, allowed) }
        return try await fallback(request)
    }

    private func match(_ pattern: [Substring], _ path: [Substring]) -> RouteParameters? {
        var params = RouteParameters()
        var i = 0
        for p in pattern {
            if p.hasPrefix("{") && p.hasSuffix("...}") {
                guard i < path.count else { return nil }
                params.values[String(p.dropFirst().dropLast(4))] = path[i...].joined(separator: "/").percentDecoded(plusIsSpace: false) ?? ""
                return params
            }
            guard i < path.count else { return nil }
            if p.hasPrefix("{") && p.hasSuffix("}") {
                guard let value = path[i].percentDecoded(plusIsSpace: false) else { return nil }
                params.values[String(p.dropFirst().dropLast())] = value
            } else if p != path[i] {
                return nil
            }
            i += 1
        }
        return i == path.count ? params : nil
    }
}

/// Values of a route's `{name}` segments, percent-decoded.
public struct RouteParameters: Sendable {
    public var values: [String: String] = [:]
    public init() {}
    public subscript(_ name: String) -> String? { values[name] }
}
