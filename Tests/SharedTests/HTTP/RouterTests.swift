import Testing
@testable import Shared

@Suite struct RouterTests {
    func request(_ method: String, _ target: String) -> HTTPRequest {
        HTTPRequest(head: HTTPRequestHead(method: method, target: target, headers: ["Host": "a"]), body: HTTPRequestBody(bytes: []))
    }

    func text(_ r: HTTPResponse) -> String {
        if case .bytes(let b) = r.body { return String(decoding: b, as: UTF8.self) }
        return ""
    }

    @Test func matchesExactPathsPatternsAndRest() async throws {
        var router = Router()
        router.get("/api/version") { _, _ in .text("v") }
        router.get("/v1/models/{id}") { _, p in .text("model \(p["id"]!)") }
        router.post("/api/logs/{name...}") { _, p in .text("logs \(p["name"]!)") }
        #expect(text(try await router.handle(request("GET", "/api/version"))) == "v")
        #expect(text(try await router.handle(request("HEAD", "/api/version"))) == "v")
        #expect(text(try await router.handle(request("GET", "/v1/models/qwen2.5%3A7b+q4"))) == "model qwen2.5:7b+q4")
        #expect(text(try await router.handle(request("POST", "/api/logs/runners/a%20b"))) == "logs runners/a b")
        #expect(try await router.handle(request("GET", "/nope")).status == .notFound)
        let wrongMethod = try await router.handle(request("DELETE", "/api/version"))
        #expect(wrongMethod.status == .methodNotAllowed)
        #expect(wrongMethod.headers["allow"] == "GET, HEAD")
    }

    @Test func queryValuesDecodePlusAsSpace() {
        let head = HTTPRequestHead(method: "GET", target: "/x?name=a+b%21&empty=&flag", headers: ["Host": "a"])
        #expect(head.queryValue("name") == "a b!")
        #expect(head.queryValue("empty") == "")
        #expect(head.queryValue("flag") == "")
        #expect(head.queryValue("missing") == nil)
    }
}
