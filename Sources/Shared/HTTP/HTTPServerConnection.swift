import Glibc

/// One accepted connection of an `HTTPServer`: reads requests in order, runs the handler, writes
/// responses. Owned by its own task on the server's event loop; nothing here is shared.
///
/// Output policy: a fixed response is appended to `output` and flushed when no further request is
/// already buffered, so pipelined responses leave in one `send`; a streaming response flushes on
/// every write.
final class HTTPServerConnection: HTTPBodySource, HTTPBodyWriter {
    let connection: Connection
    let core: HTTPServerCore
    let id: UInt64
    let input = ByteBuffer(capacity: 16 * 1024)
    let output = ByteBuffer(capacity: 16 * 1024)

    var body = HTTPBodyDecoder(framing: .none)
    var bodyReceived = 0
    /// This request's body limit (`Configuration.bodyLimit`, else `limits.maxBodyBytes`).
    var bodyLimit = 0
    var continuePending = false
    var streamChunked = false
    var streamRemaining: Int?
    /// Requests read so far (for the read-ahead probe).
    var requestsServed = 0

    init(connection: Connection, core: HTTPServerCore, id: UInt64) {
        self.connection = connection
        self.core = core
        self.id = id
    }

    var config: HTTPServer.Configuration { core.configuration }

    func run() async {
        do {
            try await serve()
        } catch {
            // A peer that vanished, a write timeout or cancellation: nothing more to say to this client.
        }
        connection.close()
    }

    // MARK: Request loop

    func serve() async throws {
        while true {
            guard let head = try await readHead() else { return }
            let receivedAt = monotonicNanos()
            bodyLimit = config.bodyLimit?(head) ?? config.limits.maxBodyBytes
            if case .length(let n) = head.framing, n > bodyLimit {
                try await sendError(HTTPError(.payloadTooLarge, "request body of \(n) bytes is larger than the limit of \(bodyLimit) bytes", closesConnection: true),
                                    path: head.path)
                return
            }
            body = HTTPBodyDecoder(framing: head.framing, maxChunkMetadataBytes: config.limits.maxChunkMetadataBytes)
            bodyReceived = 0
            continuePending = head.expectsContinue
            var close = !head.keepAlive || core.isShuttingDown

            let request = HTTPRequest(head: head, body: HTTPRequestBody(source: self), receivedAt: receivedAt,
                                      disconnect: ClientDisconnect(fd: connection.fd))
            var response: HTTPResponse
            do {
                response = try await core.handler.handle(request)
            } catch let error as HTTPError {
                response = .text(error.message + "\n", status: error.status)
                if error.closesConnection { close = true }
            } catch is CancellationError {
                return
            } catch {
                response = .text("internal server error\n", status: .internalServerError)
            }

            // A body the handler did not read: the client may still be sending it.
            if !body.isDone {
                if continuePending {
                    close = true  // the client waits for 100 Continue and will not send the body
                } else if case .length(let length) = head.framing, length - bodyReceived > config.maxDrainBytes {
                    close = true
                }
            }
            if try await writeResponse(response, head: head, close: close) { close = true }
            if close {
                try await flush()
                await lingeringClose()
                return
            }
            if !body.isDone {
                guard (try? await drainBody()) == true else {
                    try await flush()
                    return
                }
            }
            if input.readableCount == 0 || output.readableCount >= 16 * 1024 { try await flush() }
        }
    }

    /// Reads until a whole head is parsed. Returns nil when the connection should end quietly.
    func readHead() async throws -> HTTPRequestHead? {
        var headDeadline: UInt64 = 0
        while true {
            if input.readableCount > 0 {
                switch HTTPParser.parseRequestHead(input.readable, limits: config.limits) {
                case .complete(let head, let consumed):
                    input.consume(consumed)
                    return head
                case .failure(let error):
                    try await sendError(error)
                    return nil
                case .incomplete:
                    break
                }
                if headDeadline == 0 { headDeadline = deadline(after: config.headerTimeout) }
                try await flush()
                let n: Int
                do {
                    n = try await connection.read(into: input, deadline: headDeadline)
                } catch EventLoopError.timedOut {
                    try await sendError(HTTPError(.requestTimeout, "request header not received within \(config.headerTimeout) s", closesConnection: true))
                    return nil
                }
                if n == 0 { return nil }
            } else {
                try await flush()
                guard core.connections.setIdle(id, true) else { return nil }
                let n: Int
                do {
                    // Under light load the next request is not there yet: wait for it instead of a read
                    // that fails with EAGAIN. Under heavy load it usually is; every 8th request probes.
                    requestsServed &+= 1
                    let waitFirst = requestsServed & 7 != 0
                    // The first request of a connection gets the header timeout (a client that connects
                    // and says nothing is dropped after 10 s); the keep-alive timeout is the idle time
                    // allowed *between* requests, as nginx does.
                    let idle = requestsServed == 1 ? config.headerTimeout : config.keepAliveTimeout
                    n = try await connection.read(into: input, deadline: deadline(after: idle), waitFirst: waitFirst)
                } catch EventLoopError.timedOut {
                    return nil
                }
                guard core.connections.setIdle(id, false), n > 0 else { return nil }
                headDeadline = deadline(after: config.headerTimeout)
            }
        }
    }

    // MARK: Request body (HTTPBodySource)

    func readBodyChunk() async throws -> [UInt8]? {
        if continuePending {
            continuePending = false
            output.append("HTTP/1.1 100 Continue\r\n\r\n" as StaticString)
            try await flush()
        }
        while true {
            switch try body.next(input) {
            case .data(let piece):
                bodyReceived += piece.count
                if bodyReceived > bodyLimit {
                    throw HTTPError(.payloadTooLarge, "request body is larger than the limit of \(bodyLimit) bytes", closesConnection: true)
                }
                return piece
            case .end:
                return nil
            case .needMore:
                break
            }
            let n: Int
            do {
                n = try await connection.read(into: input, deadline: deadline(after: config.bodyTimeout))
            } catch EventLoopError.timedOut {
                throw HTTPError(.requestTimeout, "no request body bytes for \(config.bodyTimeout) s", closesConnection: true)
            }
            if n == 0 { throw HTTPError(.badRequest, "connection closed before the request body was complete", closesConnection: true) }
        }
    }

    /// Reads and discards the rest of an unread body, so the next request can be parsed.
    func drainBody() async throws -> Bool {
        var drained = 0
        while let chunk = try await readBodyChunk() {
            drained += chunk.count
            if drained > config.maxDrainBytes { return false }
        }
        return true
    }

    // MARK: Response

    /// Writes a response; returns true when the connection must close afterwards.
    func writeResponse(_ response: HTTPResponse, head: HTTPRequestHead, close: Bool) async throws -> Bool {
        let isHead = head.method == "HEAD"
        let noBody = response.status.forbidsBody
        var mustClose = close
        var streamProducer: (@Sendable (any HTTPBodyWriter) async throws -> Void)?
        var fixed: [UInt8] = []
        var length: Int?

        switch response.body {
        case .bytes(let bytes):
            fixed = bytes
            length = bytes.count
        case .stream(let contentLength, let producer):
            streamProducer = producer
            length = contentLength
        case .upgrade(let takeover):
            try await writeUpgrade(response, takeover: takeover)
            return true
        }
        if streamProducer != nil && length == nil && head.version == .http1_0 { mustClose = true }

        appendHead(response)
        HTTPDate.append(to: output)
        if mustClose {
            output.append("Connection: close\r\n" as StaticString)
        } else if head.version == .http1_0 {
            output.append("Connection: keep-alive\r\n" as StaticString)
        }
        streamChunked = false
        if !noBody {
            if let length {
                output.append("Content-Length: " as StaticString)
                output.append(decimal: length)
                output.append("\r\n" as StaticString)
            } else if head.version == .http1_1 {
                output.append("Transfer-Encoding: chunked\r\n" as StaticString)
                streamChunked = true
            }
        }
        output.append("\r\n" as StaticString)

        if isHead || noBody { return mustClose }
        guard let producer = streamProducer else {
            output.append(fixed)
            return mustClose
        }
        try await flush()
        streamRemaining = length
        try await producer(self)
        if streamChunked {
            output.append("0\r\n\r\n" as StaticString)
        } else if let remaining = streamRemaining, remaining != 0 {
            throw HTTPError(.internalServerError, "stream ended \(remaining) bytes short of its Content-Length")
        }
        streamChunked = false
        try await flush()
        return mustClose
    }

    /// The status line and the handler's own header fields (the framing ones are the server's to write).
    func appendHead(_ response: HTTPResponse) {
        output.append(HTTPServer.statusLine(response.status))
        for field in response.headers where !HTTPHeaders.isFraming(field.name) {
            output.append(field.name)
            output.append(": " as StaticString)
            output.append(field.value)
            output.append("\r\n" as StaticString)
        }
    }

    /// `101 Switching Protocols` and the hand-over: the head (with `Connection: Upgrade`, no body
    /// framing), then the connection belongs to `takeover` until it returns; the server then closes it.
    func writeUpgrade(_ response: HTTPResponse, takeover: @Sendable (HTTPUpgradedConnection) async -> Void) async throws {
        appendHead(response)
        output.append("Connection: Upgrade\r\n" as StaticString)
        HTTPDate.append(to: output)
        output.append("\r\n" as StaticString)
        try await flush()
        await takeover(HTTPUpgradedConnection(connection: connection, input: input, writeTimeout: config.writeTimeout))
    }

    /// A streamed body piece, framed and flushed at once.
    func write(_ bytes: [UInt8]) async throws {
        if bytes.isEmpty { return }
        if streamChunked {
            output.append(hex: bytes.count)
            output.append("\r\n" as StaticString)
            output.append(bytes)
            output.append("\r\n" as StaticString)
        } else {
            if let remaining = streamRemaining {
                guard bytes.count <= remaining else {
                    throw HTTPError(.internalServerError, "stream wrote past its Content-Length")
                }
                streamRemaining = remaining - bytes.count
            }
            output.append(bytes)
        }
        try await flush()
    }


    func flush() async throws {
        if output.readableCount > 0 {
            try await connection.write(output, deadline: deadline(after: config.writeTimeout))
        }
    }

    /// Answers a protocol fault with its status and closes.
    func sendError(_ error: HTTPError, path: Substring? = nil) async throws {
        var contentType = "text/plain; charset=utf-8"
        var body = Array((error.message + "\n").utf8)
        if let formatter = config.errorFormatter {
            (contentType, body) = formatter(error, path)
        }
        output.append(HTTPServer.statusLine(error.status))
        output.append("Content-Type: \(contentType)\r\nConnection: close\r\n")
        HTTPDate.append(to: output)
        output.append("Content-Length: " as StaticString)
        output.append(decimal: body.count)
        output.append("\r\n\r\n" as StaticString)
        output.append(body)
        try await flush()
        await lingeringClose()
    }

    /// Closes without losing the response: a close with unread input makes the kernel send RST, which
    /// can discard the response at the client. Send FIN first and discard input briefly (RFC 9112 §9.6).
    func lingeringClose() async {
        connection.shutdownWrite()
        let until = deadline(after: 1)
        var discarded = 0
        while discarded < 1 << 20 {
            input.clear()
            guard let n = try? await connection.read(into: input, deadline: until), n > 0 else { break }
            discarded += n
        }
        input.clear()
    }
}
