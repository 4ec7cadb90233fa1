import Glibc
import Synchronization
import Testing
@testable import Shared

/// The upstream HTTP client against the project's own server and a raw one.
@Suite struct HTTPClientTests {
    @Test func reusesKeepAliveConnections() async throws {
        let flags = HTTPServerTests.Flags()
        try await withServer(handler: HTTPServerTests.router(flags)) { server in
            let client = HTTPClient(address: .tcp(host: "127.0.0.1", port: server.port))
            for i in 0..<5 {
                let r = try await client.send(HTTPClientRequest(target: "/hello?\(i)"))
                #expect(String(decoding: try await r.collect(), as: UTF8.self) == "hello \(i)")
            }
            #expect(client.idleCount == 1)
            #expect(server.connectionCount == 1)
            let post = try await client.send(HTTPClientRequest(method: "POST", target: "/echo", body: .bytes(Array("ping".utf8))))
            #expect(try await post.collect() == Array("ping".utf8))
            // A streamed request body goes out chunked.
            let parts = Mutex<[[UInt8]]>([Array("a".utf8), Array("bc".utf8)])
            let streamed = try await client.send(HTTPClientRequest(method: "POST", target: "/echo", body: .stream({
                parts.withLock { $0.isEmpty ? nil : $0.removeFirst() }
            })))
            #expect(try await streamed.collect() == Array("abc".utf8))
            // With a declared length it goes out with Content-Length; a source that disagrees fails.
            let sized = Mutex<[[UInt8]]>([Array("de".utf8), Array("f".utf8)])
            let withLength = try await client.send(HTTPClientRequest(method: "POST", target: "/echo", body: .streamOfLength(3, {
                sized.withLock { $0.isEmpty ? nil : $0.removeFirst() }
            })))
            #expect(try await withLength.collect() == Array("def".utf8))
            let short = Mutex<[[UInt8]]>([Array("gh".utf8)])
            await #expect(throws: HTTPClientError.bodyLengthMismatch(declared: 3, sent: 2)) {
                _ = try await client.send(HTTPClientRequest(method: "POST", target: "/echo", body: .streamOfLength(3, {
                    short.withLock { $0.isEmpty ? nil : $0.removeFirst() }
                })))
            }
            client.closeIdle()
        }
    }

    @Test func readsAStreamingBodyPieceByPiece() async throws {
        let flags = HTTPServerTests.Flags()
        try await withServer(handler: HTTPServerTests.router(flags)) { server in
            let client = HTTPClient(address: .tcp(host: "127.0.0.1", port: server.port))
            let r = try await client.send(HTTPClientRequest(target: "/gate"))
            #expect(r.headers["transfer-encoding"] == "chunked")
            #expect(try await r.read() == Array("first".utf8))  // arrives while the handler still waits
            flags.gate.open()
            #expect(try await r.read() == Array("second".utf8))
            #expect(try await r.read() == nil)
            #expect(client.idleCount == 1)
        }
    }

    @Test func cancellingTheReaderClosesTheUpstreamConnection() async throws {
        let flags = HTTPServerTests.Flags()
        try await withServer(handler: HTTPServerTests.router(flags)) { server in
            let client = HTTPClient(address: .tcp(host: "127.0.0.1", port: server.port))
            let started = Gate()
            let reader = Task(executorPreference: EventLoop.shared) {
                let r = try await client.send(HTTPClientRequest(target: "/forever"))
                started.open()
                while try await r.read() != nil {}
            }
            await started.wait()
            reader.cancel()
            _ = await reader.result
            let until = deadline(after: 5)
            while !flags.foreverEnded.load(ordering: .sequentiallyConsistent) && monotonicNanos() < until {
                try await EventLoop.shared.sleep(seconds: 0.01)
            }
            let ended = flags.foreverEnded.load(ordering: .sequentiallyConsistent)
            #expect(ended, "the server's writer must see the close")
            #expect(client.idleCount == 0)
        }
    }

    @Test func retriesOnceWhenAPooledConnectionWasClosed() async throws {
        var config = HTTPServer.Configuration()
        config.keepAliveTimeout = 0.1
        let flags = HTTPServerTests.Flags()
        try await withServer(config, handler: HTTPServerTests.router(flags)) { server in
            let client = HTTPClient(address: .tcp(host: "127.0.0.1", port: server.port))
            _ = try await client.send(HTTPClientRequest(target: "/hello")).collect()
            try await EventLoop.shared.sleep(seconds: 0.4)  // the server closes the idle connection
            let r = try await client.send(HTTPClientRequest(target: "/hello?again"))
            #expect(String(decoding: try await r.collect(), as: UTF8.self) == "hello again")
        }
    }

    @Test func worksOverAUnixSocketAndReadsCloseDelimitedBodies() async throws {
        try await withTemporaryDirectory { dir in
            let path = dir + "/upstream.sock"
            // A raw upstream that answers without a length and closes: the body ends at EOF.
            let listener = try Listener(.unix(path: path), loop: .shared)
            let upstream = Task(executorPreference: EventLoop.shared) {
                let c = try await listener.accept()
                let buffer = ByteBuffer()
                _ = try await c.read(into: buffer)
                try await c.write(Array("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close".utf8))
                c.close()
            }
            let client = HTTPClient(address: .unix(path: path))
            let r = try await client.send(HTTPClientRequest(target: "/x"))
            #expect(String(decoding: try await r.collect(), as: UTF8.self) == "until close")
            #expect(client.idleCount == 0, "a close-delimited connection is not reusable")
            try await upstream.value
            listener.close()
        }
    }

    @Test func anUpstreamThatDiesMidBodyIsAnError() async throws {
        try await withTemporaryDirectory { dir in
            let path = dir + "/dying.sock"
            let listener = try Listener(.unix(path: path), loop: .shared)
            let upstream = Task(executorPreference: EventLoop.shared) {
                let c = try await listener.accept()
                let buffer = ByteBuffer()
                _ = try await c.read(into: buffer)
                try await c.write(Array("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial".utf8))
                c.close()
            }
            let client = HTTPClient(address: .unix(path: path))
            let r = try await client.send(HTTPClientRequest(target: "/x"))
            await #expect(throws: HTTPClientError.closedMidBody) { _ = try await r.collect() }
            try await upstream.value
            listener.close()
        }
    }
}

@Suite struct SSETests {
    @Test func splitsEventsAcrossReadsAndLineEndings() {
        var parser = SSEParser()
        var items: [SSEParser.Item] = []
        for piece in ["data: {\"a\"", ":1}\r", "\n\r\n: ping\n\nevent: done\ndata: x\ndata: y\n", "\n", "data:[DONE]\r\r"] {
            items += parser.feed(Array(piece.utf8))
        }
        #expect(items == [
            .event(SSEEvent(data: "{\"a\":1}")),
            .comment("ping"),
            .event(SSEEvent(event: "done", data: "x\ny")),
            .event(SSEEvent(data: "[DONE]")),
        ])
    }

    @Test func encodedEventsParseBack() {
        let event = SSEEvent(event: "tick", data: "line one\nline two", id: "7")
        var parser = SSEParser()
        #expect(parser.feed(event.encoded()) == [.event(event)])
        #expect(parser.feed(SSEEvent.comment()) == [.comment("ping")])
        // Fields without data dispatch nothing.
        #expect(parser.feed(Array("event: empty\n\n".utf8)).isEmpty)
    }
}
