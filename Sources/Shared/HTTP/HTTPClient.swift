import Glibc
import Synchronization

/// A request sent by `HTTPClient`.
public struct HTTPClientRequest: Sendable {
    public enum Body: Sendable {
        case none
        case bytes([UInt8])
        /// Pulled piece by piece and sent chunked; nil ends it. Not replayable, so never retried.
        case stream(@Sendable () async throws -> [UInt8]?)
        /// Pulled piece by piece and sent as exactly `length` bytes with a Content-Length (some servers
        /// read a chunked body slower); a source that yields more or fewer fails the request.
        case streamOfLength(Int, @Sendable () async throws -> [UInt8]?)
    }

    public var method: String
    /// Origin-form target: path and query.
    public var target: String
    public var headers: HTTPHeaders
    public var body: Body

    public init(method: String = "GET", target: String, headers: HTTPHeaders = HTTPHeaders(), body: Body = .none) {
        self.method = method
        self.target = target
        self.headers = headers
        self.body = body
    }
}

/// An HTTP/1.1 client for one upstream (a runner's TCP port or Unix socket, or an HTTPS server),
/// keeping a pool of idle keep-alive connections. Response bodies are read incrementally; cancelling
/// the reading task closes the connection at once (which is how a client disconnect stops generation
/// upstream).
public final class HTTPClient: Sendable {
    /// The upstream.
    public let address: SocketAddress
    /// With TLS: the host name the certificate must be for (and the SNI sent); nil for plain HTTP.
    public let tlsHost: String?
    /// The `Host` header sent when a request has none.
    let hostHeader: String
    /// Sent with every request that does not set them itself (a runner's `Authorization`).
    let defaultHeaders: HTTPHeaders
    let loop: EventLoop
    let maxIdle: Int
    let connectTimeout: Double
    private let idle = Mutex<[PooledConnection]>([])

    /// `tlsHost` makes every connection TLS, verified for that name; `hostHeader` defaults to the
    /// address (`host:port`).
    public init(address: SocketAddress, loop: EventLoop = .shared, maxIdleConnections: Int = 32, connectTimeout: Double = 5,
                tlsHost: String? = nil, hostHeader: String? = nil, defaultHeaders: HTTPHeaders = HTTPHeaders()) {
        self.address = address
        self.defaultHeaders = defaultHeaders
        self.loop = loop
        maxIdle = maxIdleConnections
        self.connectTimeout = connectTimeout
        self.tlsHost = tlsHost
        switch address {
        case .tcp(let host, let port): self.hostHeader = hostHeader ?? "\(host):\(port)"
        case .unix: self.hostHeader = hostHeader ?? "localhost"
        }
    }

    /// Idle pooled connections (for tests and metrics).
    public var idleCount: Int { idle.withLock { $0.count } }

    /// Closes every idle connection.
    public func closeIdle() {
        let all = idle.withLock { p -> [PooledConnection] in
            defer { p.removeAll() }
            return p
        }
        all.forEach { $0.connection.close() }
    }

    /// Sends a request and returns once the response head has arrived (the body is read from the
    /// returned response). `timeout` bounds the wait for the head; no total timeout applies to the body.
    /// A reused keep-alive connection that turns out closed is retried once on a fresh one when the
    /// body is replayable.
    public func send(_ request: HTTPClientRequest, timeout: Double = 300) async throws -> HTTPClientResponse {
        let headDeadline = deadline(after: timeout)
        // llama-server closes a connection after a streamed response without saying so: a pooled
        // connection the peer has closed is seen (one non-blocking peek) and dropped, not written to.
        var candidate = idle.withLock { $0.popLast() }
        while let pooled = candidate, pooled.connection.peerHasClosed {
            pooled.connection.close()
            candidate = idle.withLock { $0.popLast() }
        }
        if let pooled = candidate {
            do {
                return try await exchange(request, on: pooled, deadline: headDeadline)
            } catch HTTPClientError.staleConnection {
                // fall through to a new connection
            }
        }
        let until = deadline(after: connectTimeout)
        let connection: any ByteStream = if let tlsHost {
            try await TLSConnection.connect(to: address, host: tlsHost, loop: loop, deadline: until)
        } else {
            try await Connection.connect(to: address, loop: loop, deadline: until)
        }
        let fresh = PooledConnection(connection: connection, input: ByteBuffer(capacity: 16 * 1024))
        do {
            return try await exchange(request, on: fresh, deadline: headDeadline)
        } catch HTTPClientError.staleConnection {
            throw HTTPClientError.closedBeforeResponse
        }
    }

    func exchange(_ request: HTTPClientRequest, on pooled: PooledConnection, deadline: UInt64) async throws -> HTTPClientResponse {
        let connection = pooled.connection
        let replayable: Bool = switch request.body { case .stream, .streamOfLength: false; default: true }
        let out = ByteBuffer(capacity: 1024)
        out.append(request.method)
        out.append(byte: 32)
        out.append(request.target)
        out.append(" HTTP/1.1\r\n" as StaticString)
        if request.headers["host"] == nil {
            out.append("Host: " as StaticString)
            out.append(hostHeader)
            out.append("\r\n" as StaticString)
        }
        for field in defaultHeaders where request.headers[field.name] == nil {
            out.append(field.name)
            out.append(": " as StaticString)
            out.append(field.value)
            out.append("\r\n" as StaticString)
        }
        for field in request.headers where !HTTPHeaders.isFraming(field.name) {
            out.append(field.name)
            out.append(": " as StaticString)
            out.append(field.value)
            out.append("\r\n" as StaticString)
        }
        var streamSource: (@Sendable () async throws -> [UInt8]?)?
        var streamLength: Int?
        switch request.body {
        case .none:
            if request.method == "POST" || request.method == "PUT" || request.method == "PATCH" {
                out.append("Content-Length: 0\r\n" as StaticString)
            }
            out.append("\r\n" as StaticString)
        case .bytes(let bytes):
            out.append("Content-Length: " as StaticString)
            out.append(decimal: bytes.count)
            out.append("\r\n\r\n" as StaticString)
            out.append(bytes)
        case .stream(let source):
            out.append("Transfer-Encoding: chunked\r\n\r\n" as StaticString)
            streamSource = source
        case .streamOfLength(let length, let source):
            out.append("Content-Length: " as StaticString)
            out.append(decimal: length)
            out.append("\r\n\r\n" as StaticString)
            streamSource = source
            streamLength = length
        }
        do {
            try await connection.write(out)
            if let source = streamSource, let length = streamLength {
                var sent = 0
                while let piece = try await source() {
                    if piece.isEmpty { continue }
                    sent += piece.count
                    guard sent <= length else { throw HTTPClientError.bodyLengthMismatch(declared: length, sent: sent) }
                    out.append(piece)
                    try await connection.write(out)
                }
                guard sent == length else { throw HTTPClientError.bodyLengthMismatch(declared: length, sent: sent) }
            } else if let source = streamSource {
                while let piece = try await source() {
                    if piece.isEmpty { continue }
                    out.append(hex: piece.count)
                    out.append("\r\n" as StaticString)
                    out.append(piece)
                    out.append("\r\n" as StaticString)
                    try await connection.write(out)
                }
                out.append("0\r\n\r\n" as StaticString)
                try await connection.write(out)
            }
        } catch let error as SystemError where replayable && pooled.reused && (error.errno == EPIPE || error.errno == ECONNRESET) {
            connection.close()
            throw HTTPClientError.staleConnection
        } catch {
            connection.close()
            throw error
        }

        // Read the head, skipping interim 1xx responses.
        let input = pooled.input
        var sawBytes = false
        while true {
            if input.readableCount > 0 {
                switch HTTPParser.parseResponseHead(input.readable, requestMethod: request.method) {
                case .complete(let head, let consumed):
                    input.consume(consumed)
                    if (100..<200).contains(head.status.code) && head.status.code != 101 { continue }
                    return HTTPClientResponse(head: head, pooled: pooled, client: self)
                case .failure(let error):
                    connection.close()
                    throw HTTPClientError.malformedResponse(error.message)
                case .incomplete:
                    break
                }
            }
            let n: Int
            do {
                n = try await connection.read(into: input, deadline: deadline)
            } catch {
                connection.close()
                if case EventLoopError.timedOut = error { throw HTTPClientError.timedOut }
                throw error
            }
            if n == 0 {
                connection.close()
                if !sawBytes && pooled.reused && replayable { throw HTTPClientError.staleConnection }
                throw HTTPClientError.closedBeforeResponse
            }
            sawBytes = true
        }
    }

    /// Returns a connection whose response was read completely to the pool.
    func recycle(_ pooled: PooledConnection) {
        pooled.reused = true
        let overflow = idle.withLock { p -> Bool in
            if p.count >= maxIdle { return true }
            p.append(pooled)
            return false
        }
        if overflow { pooled.connection.close() }
    }
}

/// Errors of the HTTP client.
public enum HTTPClientError: Error, Sendable, Equatable, CustomStringConvertible {
    case timedOut
    case closedBeforeResponse
    case closedMidBody
    case malformedResponse(String)
    case bodyTooLarge(Int)
    case staleConnection
    case bodyLengthMismatch(declared: Int, sent: Int)

    public var description: String {
        switch self {
        case .timedOut: "upstream did not answer in time"
        case .closedBeforeResponse: "upstream closed the connection before responding"
        case .closedMidBody: "upstream closed the connection in the middle of the response body"
        case .malformedResponse(let m): "malformed upstream response: \(m)"
        case .bodyTooLarge(let n): "upstream response body is larger than \(n) bytes"
        case .staleConnection: "pooled connection was closed by the upstream"
        case .bodyLengthMismatch(let declared, let sent): "the request body source gave \(sent) bytes for a declared length of \(declared)"
        }
    }
}

/// A pooled connection and its input buffer (which may hold bytes read ahead).
final class PooledConnection: @unchecked Sendable {
    // @unchecked Sendable: handed from one task to the next through the pool's lock; never used by two at once.
    let connection: any ByteStream
    let input: ByteBuffer
    var reused = false
    init(connection: any ByteStream, input: ByteBuffer) {
        self.connection = connection
        self.input = input
    }
}

/// A response whose body is read piece by piece. Reading it to the end returns the connection to the
/// pool; dropping it early, or an error, closes the connection.
public final class HTTPClientResponse {
    public let head: HTTPResponseHead
    private var pooled: PooledConnection?
    private let client: HTTPClient
    private var body: HTTPBodyDecoder

    init(head: HTTPResponseHead, pooled: PooledConnection, client: HTTPClient) {
        self.head = head
        self.pooled = pooled
        self.client = client
        body = HTTPBodyDecoder(framing: head.framing, maxChunkMetadataBytes: 64 * 1024)
        if body.isDone { finish() }
    }

    deinit { pooled?.connection.close() }

    public var status: HTTPStatus { head.status }
    public var headers: HTTPHeaders { head.headers }

    /// The next piece of the body as it arrives, or nil at its end. `idleTimeout` bounds the wait for
    /// each piece (0 = none).
    public func read(idleTimeout: Double = 0) async throws -> [UInt8]? {
        guard let pooled else { return nil }
        let input = pooled.input
        while true {
            let step: HTTPBodyDecoder.Step
            do {
                step = try body.next(input)
            } catch {
                abandon()
                throw HTTPClientError.malformedResponse(error.message)
            }
            switch step {
            case .data(let piece):
                if body.isDone { finish() }
                return piece
            case .end:
                finish()
                return nil
            case .needMore:
                break
            }
            let n: Int
            do {
                n = try await pooled.connection.read(into: input, deadline: idleTimeout > 0 ? deadline(after: idleTimeout) : 0)
            } catch {
                abandon()
                if case EventLoopError.timedOut = error { throw HTTPClientError.timedOut }
                throw error
            }
            if n == 0 {
                let complete = body.endOfStream()
                abandon()
                if complete { return nil }
                throw HTTPClientError.closedMidBody
            }
        }
    }

    /// Reads the whole body, failing beyond `limit` bytes.
    public func collect(upTo limit: Int = 64 << 20) async throws -> [UInt8] {
        var all: [UInt8] = []
        while let piece = try await read() {
            if all.count + piece.count > limit {
                abandon()
                throw HTTPClientError.bodyTooLarge(limit)
            }
            all.append(contentsOf: piece)
        }
        return all
    }

    /// Closes the connection now (client gone, cancellation): the upstream sees the close at once.
    public func abandon() {
        pooled?.connection.close()
        pooled = nil
    }

    private func finish() {
        guard let pooled else { return }
        self.pooled = nil
        if head.keepAlive && pooled.input.readableCount == 0 {
            client.recycle(pooled)
        } else {
            pooled.connection.close()
        }
    }
}
