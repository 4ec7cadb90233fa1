import Glibc
import Synchronization

/// An HTTP/1.1 server on one listening socket (TCP or Unix), running every connection as a task on
/// its event loop. Bound at `init`, so a taken port is a startup error, not a later surprise.
public final class HTTPServer: Sendable {
    /// Limits and timeouts; the defaults are docs/ARCHITECTURE.md's, each overridable from `app_config.json`.
    public struct Configuration: Sendable {
        public var limits = HTTPLimits()
        /// From the first byte of a request to the end of its header block (408 after).
        public var headerTimeout: Double = 10
        /// Idle time allowed between requests on a kept-alive connection.
        public var keepAliveTimeout: Double = 60
        /// Longest pause between request body bytes (408 after).
        public var bodyTimeout: Double = 60
        /// Longest a client may leave a response unread before the connection is dropped.
        public var writeTimeout: Double = 60
        /// Unread request body bytes discarded to keep a connection alive; more closes it.
        public var maxDrainBytes = 1 << 20
        /// Shapes protocol faults the server answers itself (413 by Content-Length, 408, 400…) in the
        /// caller's API: given the error and the request path when the head was parsed, returns the
        /// content type and body. Nil: plain text.
        public var errorFormatter: (@Sendable (HTTPError, Substring?) -> (contentType: String, body: [UInt8]))?
        /// A larger (or smaller) body limit for some requests (model uploads), by their head; nil for
        /// the others, which get `limits.maxBodyBytes`.
        public var bodyLimit: (@Sendable (HTTPRequestHead) -> Int?)?
        public init() {}
    }

    let listener: Listener
    let core: HTTPServerCore
    private let acceptTask = Mutex<Task<Void, Never>?>(nil)

    /// Binds `address`. Throws `SocketError.addressInUse` if it is taken.
    public init(address: SocketAddress, configuration: Configuration = Configuration(), handler: any HTTPHandler,
                loop: EventLoop = .shared) throws {
        listener = try Listener(address, loop: loop)
        core = HTTPServerCore(configuration: configuration, handler: handler)
    }

    /// Serves on a socket that is already listening (see `InheritedSockets`).
    public init(listener: Listener, configuration: Configuration = Configuration(), handler: any HTTPHandler) {
        self.listener = listener
        core = HTTPServerCore(configuration: configuration, handler: handler)
    }

    /// The bound TCP port (the real one when asked for port 0).
    public var port: UInt16 { listener.port }
    /// The address asked for.
    public var address: SocketAddress { listener.address }
    /// Open connections right now.
    public var connectionCount: Int { core.connections.count }

    /// Starts accepting connections.
    public func start() {
        let core = self.core
        let task = listener.acceptLoop(into: core.connections) { connection, id in
            await HTTPServerConnection(connection: connection, core: core, id: id).run()
        }
        acceptTask.withLock { $0 = task }
    }

    /// Graceful shutdown: stop accepting, close idle connections, let in-flight responses finish for up
    /// to `grace` seconds, then cancel what is left.
    public func stop(grace: Double = 5) async {
        core.connections.beginShutdown()
        if let task = acceptTask.withLock({ $0 }) {
            task.cancel()
            await task.value
        }
        listener.close()
        await core.connections.drain(until: deadline(after: grace), loop: listener.loop)
        core.connections.cancelAll()
        await core.connections.drain(until: deadline(after: 1), loop: listener.loop)
    }

    private static let statusLines: [[UInt8]] = (0..<600).map { Array("HTTP/1.1 \(HTTPStatus($0))\r\n".utf8) }

    /// `HTTP/1.1 <code> <reason>\r\n`, preformatted.
    static func statusLine(_ status: HTTPStatus) -> [UInt8] {
        status.code >= 0 && status.code < 600 ? statusLines[status.code] : Array("HTTP/1.1 \(status)\r\n".utf8)
    }
}

/// The shared part of a server that its connections see: configuration, handler and the table of
/// open connections.
final class HTTPServerCore: Sendable {
    let configuration: HTTPServer.Configuration
    let handler: any HTTPHandler
    let connections = ConnectionTable()

    init(configuration: HTTPServer.Configuration, handler: any HTTPHandler) {
        self.configuration = configuration
        self.handler = handler
    }

    var isShuttingDown: Bool { connections.isShuttingDown }
}
