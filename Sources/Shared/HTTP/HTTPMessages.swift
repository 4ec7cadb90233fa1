import Glibc
import Synchronization

/// Something that answers HTTP requests. Routers, API surfaces and middleware all conform.
public protocol HTTPHandler: Sendable {
    func handle(_ request: HTTPRequest) async throws -> HTTPResponse
}

/// A handler made of a closure.
public struct ClosureHandler: HTTPHandler {
    let body: @Sendable (HTTPRequest) async throws -> HTTPResponse
    public init(_ body: @escaping @Sendable (HTTPRequest) async throws -> HTTPResponse) { self.body = body }
    public func handle(_ request: HTTPRequest) async throws -> HTTPResponse { try await body(request) }
}

/// One request as a handler sees it: the parsed head and a body read as a stream.
public struct HTTPRequest {
    public let head: HTTPRequestHead
    /// The body, read on demand (nothing is buffered before the handler asks).
    public let body: HTTPRequestBody
    /// Monotonic time (ns) when the head was fully received: the start of the gateway's own time.
    public let receivedAt: UInt64
    /// Tells when the client has gone, for handlers that wait before answering (nil off a live connection).
    public let disconnect: ClientDisconnect?

    public init(head: HTTPRequestHead, body: HTTPRequestBody, receivedAt: UInt64 = monotonicNanos(), disconnect: ClientDisconnect? = nil) {
        self.head = head
        self.body = body
        self.receivedAt = receivedAt
        self.disconnect = disconnect
    }

    public var method: String { head.method }
    public var path: Substring { head.path }
    public var headers: HTTPHeaders { head.headers }
}

/// Where request body bytes come from: the server connection, or memory (tests, internal calls).
public protocol HTTPBodySource: AnyObject {
    /// The next piece of the body, or nil at its end.
    func readBodyChunk() async throws -> [UInt8]?
}

/// A request body, read as a stream of chunks. `Expect: 100-continue` is answered on the first read.
public final class HTTPRequestBody {
    private let source: HTTPBodySource?
    private var memory: [UInt8]?

    /// A body read from a live connection.
    public init(source: HTTPBodySource) { self.source = source }
    /// A body already in memory.
    public init(bytes: [UInt8]) {
        source = nil
        memory = bytes
    }

    /// Told each chunk as the handler reads it (the dashboard's request capture); nil = nobody listens.
    public var tap: ((ArraySlice<UInt8>) -> Void)?

    /// The next chunk, or nil when the body is complete.
    public func read() async throws -> [UInt8]? {
        let chunk: [UInt8]?
        if let source {
            chunk = try await source.readBodyChunk()
        } else {
            chunk = memory.flatMap { $0.isEmpty ? nil : $0 }
            memory = nil
        }
        if let tap, let chunk { tap(chunk[...]) }
        return chunk
    }

    /// Reads the whole body; more than `limit` bytes is a 413 `HTTPError`.
    public func collect(upTo limit: Int) async throws -> [UInt8] {
        var all: [UInt8] = []
        while let chunk = try await read() {
            if all.count + chunk.count > limit {
                throw HTTPError(.payloadTooLarge, "request body is larger than \(limit) bytes", closesConnection: true)
            }
            all.append(contentsOf: chunk)
        }
        return all
    }
}

/// Receives a streaming response body; each write is flushed to the client before it returns.
public protocol HTTPBodyWriter: AnyObject {
    func write(_ bytes: [UInt8]) async throws
}

extension HTTPBodyWriter {
    /// Writes a string's UTF-8 bytes.
    public func write(_ string: String) async throws { try await write(Array(string.utf8)) }
}

/// A response: status, headers and a body that is either bytes or a stream the server drives.
/// `Content-Length`, `Transfer-Encoding`, `Connection` and `Date` are set by the server; a handler's
/// own values for them are dropped.
public struct HTTPResponse: Sendable {
    public enum Body: Sendable {
        case bytes([UInt8])
        /// Produced by the closure after the head is sent. Chunked unless `contentLength` is given.
        case stream(contentLength: Int?, @Sendable (any HTTPBodyWriter) async throws -> Void)
        /// A protocol switch (RFC 9110 §7.8; the status is 101): after the head, which carries
        /// `Connection: Upgrade`, the connection belongs to the closure, and the server closes it
        /// when the closure returns.
        case upgrade(@Sendable (HTTPUpgradedConnection) async -> Void)
    }

    public var status: HTTPStatus
    public var headers: HTTPHeaders
    public var body: Body

    public init(status: HTTPStatus = .ok, headers: HTTPHeaders = HTTPHeaders(), body: Body = .bytes([])) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// A `text/plain` response.
    public static func text(_ text: String, status: HTTPStatus = .ok) -> HTTPResponse {
        HTTPResponse(status: status, headers: ["Content-Type": "text/plain; charset=utf-8"], body: .bytes(Array(text.utf8)))
    }

    /// An `application/json` response from encoded bytes.
    public static func json(_ bytes: [UInt8], status: HTTPStatus = .ok) -> HTTPResponse {
        HTTPResponse(status: status, headers: ["Content-Type": "application/json; charset=utf-8"], body: .bytes(bytes))
    }
}

/// A connection the HTTP server handed to another protocol after `101 Switching Protocols`: the
/// socket, and whatever the client sent after the request head (the new protocol's first bytes).
/// Used by the connection's own task only, as the HTTP connection was.
public final class HTTPUpgradedConnection {
    public let connection: Connection
    /// Bytes already read past the request head.
    public let input: ByteBuffer
    /// The server's write timeout (a peer that leaves output unread this long is dropped).
    public let writeTimeout: Double

    init(connection: Connection, input: ByteBuffer, writeTimeout: Double) {
        self.connection = connection
        self.input = input
        self.writeTimeout = writeTimeout
    }
}

/// The `Date` header line (RFC 9110 §6.6.1), formatted once per second and shared.
enum HTTPDate {
    private static let cache = Mutex<(second: Int, line: [UInt8])>((-1, []))
    private static let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
    private static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    /// Appends `Date: <IMF-fixdate>\r\n` to `buffer`.
    static func append(to buffer: ByteBuffer) {
        let now = time(nil)
        cache.withLock { c in
            if c.second != now {
                var t = now
                var tm = tm()
                gmtime_r(&t, &tm)
                func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
                let s = "Date: \(days[Int(tm.tm_wday)]), \(two(tm.tm_mday)) \(months[Int(tm.tm_mon)]) \(tm.tm_year + 1900) \(two(tm.tm_hour)):\(two(tm.tm_min)):\(two(tm.tm_sec)) GMT\r\n"
                c = (now, Array(s.utf8))
            }
            buffer.append(c.line)
        }
    }
}
