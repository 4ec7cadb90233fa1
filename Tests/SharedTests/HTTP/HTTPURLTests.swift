import Testing
@testable import Shared

/// Absolute URLs as the downloader meets them: typed endpoints, `Location` headers, odd forms refused.
@Suite struct HTTPURLTests {
    @Test func partsAndDefaults() throws {
        let u = try #require(HTTPURL("https://Huggingface.co/api/models/a/b?blobs=true#frag"))
        #expect(u.scheme == "https" && u.host == "huggingface.co" && u.port == 443 && u.target == "/api/models/a/b?blobs=true")
        #expect(u.origin == "https://huggingface.co" && u.hostHeader == "huggingface.co" && u.path == "/api/models/a/b")
        let v = try #require(HTTPURL("http://127.0.0.1:8080"))
        #expect(v.port == 8080 && v.target == "/" && v.hostHeader == "127.0.0.1:8080" && !v.isTLS)
        let six = try #require(HTTPURL("http://[::1]:9/x"))
        #expect(six.host == "::1" && six.port == 9 && six.origin == "http://[::1]:9")
    }

    @Test(arguments: ["ftp://x/y", "http://", "http://user:pw@host/", "http://host:99999/", "huggingface.co/a", "http://a b/", "http://h/a b"])
    func refused(_ text: String) {
        #expect(HTTPURL(text) == nil)
    }

    @Test func locationsResolveAgainstTheRequest() throws {
        let base = try #require(HTTPURL("https://hub.example/user/repo/resolve/main/model.gguf"))
        #expect(base.resolving("https://cdn.example/blob?sig=1")?.description == "https://cdn.example/blob?sig=1")
        #expect(base.resolving("//cdn.example/x")?.description == "https://cdn.example/x")
        #expect(base.resolving("/api/resolve-cache/x")?.description == "https://hub.example/api/resolve-cache/x")
        #expect(base.resolving("other.gguf")?.description == "https://hub.example/user/repo/resolve/main/other.gguf")
        #expect(try #require(HTTPURL("http://mirror.local/hf/")).appending("/api/models/a/b")?.description == "http://mirror.local/hf/api/models/a/b")
    }

    @Test func pathEncoding() {
        #expect(HTTPURL.encodePath("a b/Ü.gguf") == "a%20b/%C3%9C.gguf")
        #expect(HTTPURL.encodePath("a/b", keepSlashes: false) == "a%2Fb")
    }

    @Test func aTLSHandshakeWithAPlainServerFailsCleanly() async throws {
        let server = try HTTPServer(address: .tcp(host: "127.0.0.1", port: 0), handler: ClosureHandler { _ in .text("plain") })
        server.start()
        do {
            _ = try await TLSConnection.connect(to: .tcp(host: "127.0.0.1", port: server.port), host: "localhost", loop: .shared,
                                                deadline: deadline(after: 5))
            Issue.record("a plain HTTP server completed a TLS handshake")
        } catch let error as TLSError {
            guard case .handshake(let host, _) = error else { Issue.record("\(error)"); return }
            #expect(host == "localhost")
        }
        await server.stop(grace: 0.5)
    }
}
