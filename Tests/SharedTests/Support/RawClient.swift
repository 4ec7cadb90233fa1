import Glibc
@testable import Shared

/// A test client that speaks raw bytes to a server, so conformance tests control every byte and can
/// observe whether the server closed the connection.
final class RawClient {
    let connection: Connection
    let input = ByteBuffer(capacity: 64 * 1024)

    struct Response {
        var status: Int
        var headers: HTTPHeaders
        var body: [UInt8]
        var text: String { String(decoding: body, as: UTF8.self) }
    }

    enum Failure: Error { case timedOut, closed, malformed(String) }

    init(connection: Connection) { self.connection = connection }

    static func connect(port: UInt16) async throws -> RawClient {
        RawClient(connection: try await Connection.connect(to: .tcp(host: "127.0.0.1", port: port), loop: .shared))
    }

    func send(_ text: String) async throws { try await connection.write(Array(text.utf8)) }
    func send(_ bytes: [UInt8]) async throws { try await connection.write(bytes) }

    /// Reads one response (Content-Length, chunked, or no body for HEAD / 1xx / 204 / 304).
    func readResponse(method: String = "GET", timeout: Double = 5) async throws -> Response {
        let until = deadline(after: timeout)
        while true {
            if input.readableCount > 0 {
                switch HTTPParser.parseResponseHead(input.readable, requestMethod: method) {
                case .complete(let head, let consumed):
                    input.consume(consumed)
                    var body: [UInt8] = []
                    switch head.framing {
                    case .none: break
                    case .length(let n):
                        while input.readableCount < n { try await fill(until) }
                        body = Array(UnsafeRawBufferPointer(rebasing: input.readable[0..<n]))
                        input.consume(n)
                    case .chunked:
                        var decoder = ChunkedDecoder()
                        loop: while true {
                            if input.readableCount == 0 { try await fill(until) }
                            switch try decoder.next(input.readable) {
                            case .data(let r, let c):
                                body += Array(UnsafeRawBufferPointer(rebasing: input.readable[r]))
                                input.consume(c)
                            case .end(let c):
                                input.consume(c)
                                break loop
                            case .needMore(let c):
                                input.consume(c)
                                try await fill(until)
                            }
                        }
                    case .untilClose:
                        while (try? await fill(until)) != nil {}
                        body = input.readableArray()
                        input.clear()
                    }
                    return Response(status: head.status.code, headers: head.headers, body: body)
                case .failure(let e):
                    throw Failure.malformed(e.message)
                case .incomplete:
                    break
                }
            }
            try await fill(until)
        }
    }

    /// Reads the next piece of bytes as they come (for streaming tests).
    func readSome(timeout: Double = 5) async throws -> [UInt8] {
        if input.readableCount == 0 { try await fill(deadline(after: timeout)) }
        defer { input.clear() }
        return input.readableArray()
    }

    private func fill(_ until: UInt64) async throws {
        do {
            let n = try await connection.read(into: input, deadline: until)
            if n == 0 { throw Failure.closed }
        } catch EventLoopError.timedOut {
            throw Failure.timedOut
        }
    }

    /// True when the server closes the connection (EOF) within `timeout`, discarding any bytes.
    func closedByServer(within timeout: Double = 3) async -> Bool {
        let until = deadline(after: timeout)
        while true {
            input.clear()
            do {
                let n = try await connection.read(into: input, deadline: until)
                if n == 0 { return true }
            } catch EventLoopError.timedOut {
                return false
            } catch {
                return true
            }
        }
    }
}

/// Starts an HTTP server on a free loopback port for one test.
func withServer(_ configuration: HTTPServer.Configuration = HTTPServer.Configuration(), handler: any HTTPHandler,
                _ body: (HTTPServer) async throws -> Void) async throws {
    let server = try HTTPServer(address: .tcp(host: "127.0.0.1", port: 0), configuration: configuration, handler: handler)
    server.start()
    do {
        try await body(server)
    } catch {
        await server.stop(grace: 0.5)
        throw error
    }
    await server.stop(grace: 0.5)
}

/// A temporary directory, removed afterwards.
func withTemporaryDirectory(_ body: (String) async throws -> Void) async throws {
    let path = try makeTemporaryDirectory(prefix: "lr-test")
    defer { removeTree(path) }
    try await body(path)
}
