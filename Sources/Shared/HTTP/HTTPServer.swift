import Glibc
import Synchronization

/// An HTTP/1.1 server on one listening socket (TCP or Unix), running every connection as a task on
/// its event loop. Bound at `init`, so a taken port is a startup error, not a later surprise.
public final class HTTPServer: Sendable {
    /// Limits and timeouts; defaults follow issue 3 and are overridable from `app_config.json`.
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

    /// The bound TCP port (the real one when asked for port 0).
    public var port: UInt16 { listener.port }
    /// The address asked for.
    public var address: SocketAddress { listener.address }
    /// Open connections right now.
    public var connectionCount: Int { core.count }

    /// Starts accepting connections.
    public func start() {
        let listener = self.listener
        let core = self.core
        let task = Task(executorPreference: listener.loop) {
            while !Task.isCancelled {
                let connection: Connection
                do {
                    connection = try await listener.accept()
                } catch {
                    break
                }
                let id = core.register()
                let task = Task(executorPreference: listener.loop) {
                    let served = HTTPServerConnection(connection: connection, core: core, id: id)
                    await served.run()
                    core.unregister(id)
                }
                core.attach(task, to: id)
            }
        }
        acceptTask.withLock { $0 = task }
    }

    /// Graceful shutdown: stop accepting, close idle connections, let in-flight responses finish for up
    /// to `grace` seconds, then cancel what is left.
    public func stop(grace: Double = 5) async {
        let idle = core.beginShutdown()
        acceptTask.withLock { $0?.cancel() }
        if let task = acceptTask.withLock({ $0 }) { await task.value }
        listener.close()
        idle.forEach { $0.cancel() }
        let until = deadline(after: grace)
        while core.count > 0 && monotonicNanos() < until {
            try? await listener.loop.sleep(seconds: 0.01)
        }
        core.cancelAll()
        let hard = deadline(after: 1)
        while core.count > 0 && monotonicNanos() < hard {
            try? await listener.loop.sleep(seconds: 0.01)
        }
    }

    private static let statusLines: [[UInt8]] = (0..<600).map { Array("HTTP/1.1 \(HTTPStatus($0))\r\n".utf8) }

    /// `HTTP/1.1 <code> <reason>\r\n`, preformatted.
    static func statusLine(_ status: HTTPStatus) -> [UInt8] {
        status.code >= 0 && status.code < 600 ? statusLines[status.code] : Array("HTTP/1.1 \(status)\r\n".utf8)
    }
}

/// The shared part of a server that its connections see: configuration, handler and the table of
/// open connections (for graceful shutdown).
final class HTTPServerCore: Sendable {
    struct Entry {
        var task: Task<Void, Never>?
        var idle = false
    }

    struct State {
        var nextID: UInt64 = 0
        var entries: [UInt64: Entry] = [:]
        var shuttingDown = false
    }

    let configuration: HTTPServer.Configuration
    let handler: any HTTPHandler
    private let state = Mutex(State())
    private let shuttingDown = Atomic<Bool>(false)

    init(configuration: HTTPServer.Configuration, handler: any HTTPHandler) {
        self.configuration = configuration
        self.handler = handler
    }

    var isShuttingDown: Bool { shuttingDown.load(ordering: .relaxed) }
    var count: Int { state.withLock { $0.entries.count } }

    func register() -> UInt64 {
        state.withLock { s in
            s.nextID += 1
            s.entries[s.nextID] = Entry()
            return s.nextID
        }
    }

    func attach(_ task: Task<Void, Never>, to id: UInt64) {
        let orphan = state.withLock { s -> Bool in
            guard s.entries[id] != nil else { return false }
            s.entries[id]!.task = task
            return s.shuttingDown
        }
        if orphan { task.cancel() }
    }

    func unregister(_ id: UInt64) {
        _ = state.withLock { $0.entries.removeValue(forKey: id) }
    }

    /// Marks a connection idle (waiting for a request) or busy. Returns false once shutdown began,
    /// telling an idle connection to close instead of waiting.
    func setIdle(_ id: UInt64, _ idle: Bool) -> Bool {
        state.withLock { s in
            s.entries[id]?.idle = idle
            return !s.shuttingDown
        }
    }

    /// Flags shutdown and returns the tasks of idle connections, to be cancelled.
    func beginShutdown() -> [Task<Void, Never>] {
        shuttingDown.store(true, ordering: .relaxed)
        return state.withLock { s in
            s.shuttingDown = true
            return s.entries.values.compactMap { $0.idle ? $0.task : nil }
        }
    }

    func cancelAll() {
        state.withLock { $0.entries.values.compactMap(\.task) }.forEach { $0.cancel() }
    }
}
