import Shared
import Testing
@testable import Gateway

/// The one error path: what a handler throws is answered in the shape of the surface it came to.
@Suite struct SurfaceGuardTests {
    struct Unexpected: Error {}

    static func guarded(ollamaPort: Bool) -> SurfaceGuard {
        var router = Router()
        router.post("/api/chat") { _, _ in throw APIError(.notFound, "model 'x' not found", param: "model", code: "model_not_found") }
        router.post("/v1/chat/completions") { _, _ in throw APIError(.serviceUnavailable, "busy", headers: ["Retry-After": "3"]) }
        router.post("/api/generate") { _, _ in throw BadRequest(stringLiteral: "keep_alive: invalid duration \"5d\"") }
        router.post("/boom") { _, _ in throw Unexpected() }
        router.post("/body") { _, _ in throw HTTPError(.payloadTooLarge, "the body is larger than 10 bytes", closesConnection: true) }
        return SurfaceGuard(next: router, keys: [], origins: OriginPolicy(patterns: OriginPolicy.localOrigins, dashboardWebPort: nil),
                            hosts: HostPolicy(boundHost: "127.0.0.1", allowedHosts: [], port: 11434)) { path in
            ollamaPort && !path.hasPrefix("/v1") ? .ollama : .openAI
        }
    }

    static func request(_ path: String, headers: HTTPHeaders = ["Host": "127.0.0.1:11434"]) -> HTTPRequest {
        HTTPRequest(head: HTTPRequestHead(method: "POST", target: path, headers: headers), body: HTTPRequestBody(bytes: []))
    }

    static func body(_ r: HTTPResponse) throws -> JSONValue {
        guard case .bytes(let bytes) = r.body else { throw Unexpected() }
        return try JSONParser.parse(bytes).0
    }

    @Test func thrownErrorsAreAnsweredInTheOllamaShapeUnderApiAndTheOpenAIShapeUnderV1() async throws {
        let g = Self.guarded(ollamaPort: true)
        let notFound = try await g.handle(Self.request("/api/chat"))
        let notFoundBody = try Self.body(notFound)
        #expect(notFound.status == .notFound && notFoundBody == .object(JSONObject([("error", .string("model 'x' not found"))])))
        let busy = try await g.handle(Self.request("/v1/chat/completions"))
        #expect(busy.status == .serviceUnavailable && busy.headers["retry-after"] == "3" && busy.headers["x-should-retry"] == "false")
        let busyBody = try Self.body(busy)
        #expect(busyBody["error"]?["type"] == .string("unavailable_error"))
        let bad = try await g.handle(Self.request("/api/generate"))
        let badBody = try Self.body(bad)
        #expect(bad.status == .badRequest && badBody["error"] == .string("keep_alive: invalid duration \"5d\""))
    }

    @Test func anUnexpectedErrorIsA500InTheShapeNeverPlainText() async throws {
        let r = try await Self.guarded(ollamaPort: false).handle(Self.request("/boom"))
        let rBody = try Self.body(r)
        #expect(r.status == .internalServerError && rBody["error"]?["type"] == .string("server_error"))
        let tooBig = try await Self.guarded(ollamaPort: false).handle(Self.request("/body"))
        #expect(tooBig.status == .payloadTooLarge && tooBig.headers["connection"] == "close")
    }

    @Test func foreignHostsAndOriginsAreRefusedBeforeAnyHandler() async throws {
        let g = Self.guarded(ollamaPort: true)
        let host = try await g.handle(Self.request("/api/chat", headers: ["Host": "evil.example"]))
        let hostBody = try Self.body(host)
        #expect(host.status == .forbidden && hostBody["error"]?.stringValue?.containsText("allowed_hosts") == true)
        let origin = try await g.handle(Self.request("/v1/chat/completions", headers: ["Host": "127.0.0.1:11434", "Origin": "http://evil.example"]))
        #expect(origin.status == .forbidden && origin.headers["access-control-allow-origin"] == nil)
        let local = try await g.handle(Self.request("/v1/chat/completions", headers: ["Host": "localhost:11434", "Origin": "http://localhost:3000"]))
        #expect(local.status == .serviceUnavailable && local.headers["access-control-allow-origin"] == "http://localhost:3000")
    }
}
