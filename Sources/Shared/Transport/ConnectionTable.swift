import Synchronization

/// The open connections of a server, for graceful shutdown: each connection's task, and whether it
/// is idle (waiting for its next request) so shutdown can close idle ones at once and let busy ones
/// finish. Shared by the HTTP and RPC servers.
public final class ConnectionTable: Sendable {
    struct Entry {
        var task: Task<Void, Never>?
        var idle = false
    }

    struct State {
        var nextID: UInt64 = 0
        var entries: [UInt64: Entry] = [:]
        var shuttingDown = false
    }

    private let state = Mutex(State())
    private let shuttingDown = Atomic<Bool>(false)

    public init() {}

    /// Whether shutdown has begun (cheap: an atomic load).
    public var isShuttingDown: Bool { shuttingDown.load(ordering: .relaxed) }
    /// Open connections.
    public var count: Int { state.withLock { $0.entries.count } }

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

    /// Marks a connection idle or busy. Returns false once shutdown began, telling an idle
    /// connection to close instead of waiting.
    func setIdle(_ id: UInt64, _ idle: Bool) -> Bool {
        state.withLock { s in
            s.entries[id]?.idle = idle
            return !s.shuttingDown
        }
    }

    /// Flags shutdown and cancels the idle connections.
    func beginShutdown() {
        shuttingDown.store(true, ordering: .relaxed)
        let idle = state.withLock { s in
            s.shuttingDown = true
            return s.entries.values.compactMap { $0.idle ? $0.task : nil }
        }
        idle.forEach { $0.cancel() }
    }

    /// Cancels every connection's task.
    func cancelAll() {
        state.withLock { $0.entries.values.compactMap(\.task) }.forEach { $0.cancel() }
    }

    /// Waits until every connection has ended or `deadline` (monotonic ns) passes.
    func drain(until deadline: UInt64, loop: EventLoop) async {
        while count > 0 && monotonicNanos() < deadline {
            try? await loop.sleep(seconds: 0.01)
        }
    }
}

extension Listener {
    /// Accepts connections until cancelled or closed, running `serve` for each as its own task on the
    /// loop, tracked in `table` from before it starts until after it ends.
    func acceptLoop(into table: ConnectionTable, serve: @escaping @Sendable (Connection, UInt64) async -> Void) -> Task<Void, Never> {
        Task(executorPreference: loop) { [self] in
            while !Task.isCancelled {
                let connection: Connection
                do {
                    connection = try await accept()
                } catch {
                    break
                }
                let id = table.register()
                let task = Task(executorPreference: loop) {
                    await serve(connection, id)
                    table.unregister(id)
                }
                table.attach(task, to: id)
            }
        }
    }
}
