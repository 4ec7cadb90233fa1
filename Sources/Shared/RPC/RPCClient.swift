import Glibc
import Synchronization

/// Errors of calling another service.
public enum RPCError: Error, Sendable, Equatable, CustomStringConvertible {
    /// No reply (or no connection) within the call's timeout.
    case timedOut(method: String, seconds: Double)
    /// The connection dropped after the request was sent; whether it ran is unknown.
    case connectionLost(method: String)
    /// The service answered with an error.
    case remote(RPCFault)
    /// The reply could not be decoded as the method's result type.
    case badReply(method: String, detail: String)
    /// The client was closed.
    case closed

    public var description: String {
        switch self {
        case .timedOut(let m, let s): "\(m): no answer within \(s) s (is the service running?)"
        case .connectionLost(let m): "\(m): connection to the service was lost during the call"
        case .remote(let f): f.description
        case .badReply(let m, let d): "\(m): unexpected reply: \(d)"
        case .closed: "the RPC client is closed"
        }
    }
}

/// A JSON-RPC client for one service's Unix socket (or a host's authenticated TCP control port). It connects in the background and reconnects
/// with capped exponential backoff whenever the peer goes away; a call made while disconnected waits
/// for the reconnect, up to its own timeout. Pipelined calls are matched to replies by id.
public final class RPCClient: Sendable {
    private struct Pending {
        var continuation: CheckedContinuation<RPCIncoming, any Error>
        var method: String
        var timer: UInt64
        /// What to do with a reply that comes after the caller gave up (see `call(_:_:timeout:onAbandonedResult:)`).
        var lateReply: (@Sendable (RPCIncoming) -> Void)?
    }

    private struct ConnectWaiter {
        var continuation: CheckedContinuation<QueuedWriter, any Error>
        var timer: UInt64
    }

    private struct State {
        var writer: QueuedWriter?
        var nextID = 0
        var pending: [Int: Pending] = [:]
        /// Calls the caller gave up on whose reply still has a use when it comes (a grant to hand back).
        /// The server answers every request, a cancelled one too, so each entry leaves with its reply,
        /// or with the connection (whose end releases on the server's side whatever it granted).
        var abandoned: [Int: @Sendable (RPCIncoming) -> Void] = [:]
        var connectWaiters: [Int: ConnectWaiter] = [:]
        var subscribed = false
        var closed = false
        var notificationHandlers: [@Sendable (String, JSONValue?) -> Void] = []
        var connectHandler: (@Sendable () -> Void)?
    }

    /// The socket path of the service (for TCP, the address as text).
    public let path: String
    /// Where the service listens: its Unix socket, or a host's TCP control port.
    public let address: SocketAddress
    /// On TCP, the secret the connection must prove before any call (`RPCAuth`).
    let secret: RPCSecret?
    /// Why the last connection attempt failed (nil once connected).
    private let lastFailure = Mutex<String?>(nil)
    let loop: EventLoop
    /// Default per-call timeout, seconds.
    public let defaultTimeout: Double
    /// Backoff between connection attempts: starts here and doubles up to `maxBackoff`.
    public let minBackoff: Double
    public let maxBackoff: Double
    private let state = Mutex(State())
    private let task = Mutex<Task<Void, Never>?>(nil)

    public convenience init(path: String, loop: EventLoop = .shared, defaultTimeout: Double = 10, minBackoff: Double = 0.05, maxBackoff: Double = 2) {
        self.init(address: .unix(path: path), secret: nil, loop: loop, defaultTimeout: defaultTimeout, minBackoff: minBackoff, maxBackoff: maxBackoff)
    }

    /// A client of a TCP control plane (`secret` proven on every connection) or of a Unix socket.
    public init(address: SocketAddress, secret: RPCSecret?, loop: EventLoop = .shared, defaultTimeout: Double = 10,
                minBackoff: Double = 0.05, maxBackoff: Double = 2) {
        self.address = address
        self.secret = secret
        if case .unix(let p) = address { path = p } else { path = address.description }
        self.loop = loop
        self.defaultTimeout = defaultTimeout
        self.minBackoff = minBackoff
        self.maxBackoff = maxBackoff
    }

    /// Starts connecting (idempotent).
    public func start() {
        task.withLock { t in
            guard t == nil else { return }
            t = Task(executorPreference: loop) { [self] in await maintain() }
        }
    }

    /// Closes the connection and fails every waiting call with `RPCError.closed`.
    public func close() async {
        let (waiters, pendings, writer) = state.withLock { s in
            s.closed = true
            defer {
                s.connectWaiters = [:]
                s.pending = [:]
                s.writer = nil
            }
            return (Array(s.connectWaiters.values), Array(s.pending.values), s.writer)
        }
        waiters.forEach { loop.cancelTimer($0.timer); $0.continuation.resume(throwing: RPCError.closed) }
        pendings.forEach { loop.cancelTimer($0.timer); $0.continuation.resume(throwing: RPCError.closed) }
        writer?.shutdown()
        if let t = task.withLock({ $0 }) {
            t.cancel()
            await t.value
        }
    }

    /// Whether a connection is up right now.
    public var isConnected: Bool { state.withLock { $0.writer != nil } }

    /// Why the last attempt to connect failed (refused, unreachable, authentication), nil once connected.
    public var connectFailure: String? { lastFailure.withLock { $0 } }

    /// Drops the current connection (its pending calls fail with `connectionLost`) and connects anew:
    /// for a TCP peer that stopped answering without closing (a cut link sends no FIN).
    public func dropConnection() {
        state.withLock { $0.writer }?.shutdown()
    }

    /// Receives every notification the service pushes (after `subscribe()`), on the event loop thread;
    /// each handler added gets every notification.
    public func onNotification(_ handler: @escaping @Sendable (_ method: String, _ params: JSONValue?) -> Void) {
        state.withLock { $0.notificationHandlers.append(handler) }
    }

    /// Called on the loop thread after each (re)connect, e.g. to refresh a snapshot missed while down.
    public func onConnect(_ handler: @escaping @Sendable () -> Void) {
        state.withLock { $0.connectHandler = handler }
    }

    /// Asks the service for its notifications, now and after every reconnect.
    public func subscribe() {
        let writer = state.withLock { s -> QueuedWriter? in
            s.subscribed = true
            return s.writer
        }
        if let writer { sendSubscribe(writer) }
    }

    /// Decodes a notification's params (for use inside `onNotification`).
    public static func decode<N: RPCNotification>(_ notification: N.Type, from params: JSONValue?) -> N.Params? {
        try? RPCIncoming.member(params, "params", as: N.Params.self)
    }

    /// Calls `M` and returns its result. Waits for a connection if there is none, all within `timeout`.
    /// A caller cancelled before the request is written sends nothing.
    ///
    /// `onAbandonedResult` is for methods that grant something (a lease): when the caller gives up
    /// (cancellation, timeout) after the request went out, a result that still arrives is passed to it
    /// instead of being dropped, so the grant can be handed back.
    public func call<M: RPCMethod>(_ method: M.Type, _ params: M.Params, timeout: Double? = nil,
                                   onAbandonedResult: (@Sendable (M.Result) -> Void)? = nil) async throws -> M.Result {
        let seconds = timeout ?? defaultTimeout
        let until = deadline(after: seconds)
        let writer = try await connection(until: until, method: M.name, seconds: seconds)
        let id = state.withLock { s -> Int in
            s.nextID += 1
            return s.nextID
        }
        let line: [UInt8]
        do {
            line = try RPCCoding.encodeLine(RPCRequestOut(id: .number(id), method: M.name, params: params))
        } catch {
            throw RPCError.badReply(method: M.name, detail: "params could not be encoded: \(error)")
        }
        var lateReply: (@Sendable (RPCIncoming) -> Void)?
        if let handler = onAbandonedResult {
            lateReply = { @Sendable (reply: RPCIncoming) -> Void in
                guard reply.error == nil, let result = (try? reply.result(as: M.Result.self)) ?? nil else { return }
                handler(result)
            }
        }
        let reply = try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<RPCIncoming, any Error>) in
                let name = M.name
                // Registered before its timer exists: a deadline already past fires at once, and a timer
                // that fired before the call was pending would find nothing to time out (the call then
                // waited for the reply however long it took).
                state.withLock { $0.pending[id] = Pending(continuation: continuation, method: M.name, timer: 0, lateReply: lateReply) }
                let timer = loop.schedule(at: until) { [self] in
                    abandon(id, with: RPCError.timedOut(method: name, seconds: seconds), on: writer)
                }
                let stillPending = state.withLock { s -> Bool in
                    guard s.pending[id] != nil else { return false }
                    s.pending[id]!.timer = timer
                    return true
                }
                if !stillPending { loop.cancelTimer(timer) }
                if Task.isCancelled {
                    fail(id: id, with: CancellationError())
                    return
                }
                if !writer.send(line) { fail(id: id, with: RPCError.connectionLost(method: M.name)) }
            }
        } onCancel: {
            abandon(id, with: CancellationError(), on: writer)
        }
        if let fault = reply.error { throw RPCError.remote(fault) }
        let result: M.Result?
        do {
            result = try reply.result(as: M.Result.self)
        } catch {
            throw RPCError.badReply(method: M.name, detail: describeDecodingError(error))
        }
        if let result { return result }
        if let empty = Empty() as? M.Result { return empty }
        throw RPCError.badReply(method: M.name, detail: "no result")
    }

    /// Sends a notification (no reply). Dropped silently when disconnected: used for fire-and-forget
    /// records that must never delay the caller.
    @discardableResult
    public func notify<N: RPCNotification>(_ notification: N.Type, _ params: N.Params) -> Bool {
        guard let writer = state.withLock({ $0.writer }),
              let line = try? RPCCoding.encodeLine(RPCRequestOut(id: nil, method: N.name, params: params)) else { return false }
        return writer.send(line)
    }

    // MARK: Internals

    @discardableResult
    private func fail(id: Int, with error: any Error) -> Bool {
        guard let p = state.withLock({ $0.pending.removeValue(forKey: id) }) else { return false }
        loop.cancelTimer(p.timer)
        p.continuation.resume(throwing: error)
        return true
    }

    /// The caller gives up on request `id` (cancelled, or out of time). Only if its reply has not come
    /// yet: then the caller gets `error`, the server is told (`rpc.cancel`) so the work stops there
    /// too, and a reply that still comes goes to the call's `lateReply`. A reply that already came
    /// went to the caller, and the server is not told (it would undo what the caller now holds).
    private func abandon(_ id: Int, with error: any Error, on writer: QueuedWriter) {
        let p = state.withLock { s -> Pending? in
            guard let p = s.pending.removeValue(forKey: id) else { return nil }
            if let late = p.lateReply, s.writer === writer { s.abandoned[id] = late }
            return p
        }
        guard let p else { return }
        loop.cancelTimer(p.timer)
        p.continuation.resume(throwing: error)
        sendCancel(id, on: writer)
    }

    private func connection(until: UInt64, method: String, seconds: Double) async throws -> QueuedWriter {
        if let w = state.withLock({ $0.writer }) { return w }
        let key = state.withLock { s -> Int in
            s.nextID += 1
            return s.nextID
        }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<QueuedWriter, any Error>) in
                enum Now { case wait, ready(QueuedWriter), closed }
                let now = state.withLock { s -> Now in
                    if s.closed { return .closed }
                    if let w = s.writer { return .ready(w) }
                    s.connectWaiters[key] = ConnectWaiter(continuation: continuation, timer: 0)
                    return .wait
                }
                switch now {
                case .wait:
                    // The timer after the waiter, as for calls: one that fires first must find it.
                    let timer = loop.schedule(at: until) { [self] in
                        failWaiter(key, RPCError.timedOut(method: method, seconds: seconds))
                    }
                    let stillWaiting = state.withLock { s -> Bool in
                        guard s.connectWaiters[key] != nil else { return false }
                        s.connectWaiters[key]!.timer = timer
                        return true
                    }
                    if !stillWaiting { loop.cancelTimer(timer) }
                    if Task.isCancelled { failWaiter(key, CancellationError()) }
                case .ready(let w):
                    continuation.resume(returning: w)
                case .closed:
                    continuation.resume(throwing: RPCError.closed)
                }
            }
        } onCancel: {
            failWaiter(key, CancellationError())
        }
    }

    private func failWaiter(_ key: Int, _ error: any Error) {
        guard let w = state.withLock({ $0.connectWaiters.removeValue(forKey: key) }) else { return }
        loop.cancelTimer(w.timer)
        w.continuation.resume(throwing: error)
    }

    /// Tells the server the caller gave up on request `id` (timeout or cancellation), so work queued
    /// for it stops there too.
    private func sendCancel(_ id: Int, on writer: QueuedWriter) {
        if let line = try? RPCCoding.encodeLine(RPCRequestOut(id: nil, method: "rpc.cancel", params: CancelParams(id: .number(id)))) {
            writer.send(line)
        }
    }

    private func sendSubscribe(_ writer: QueuedWriter) {
        if let line = try? RPCCoding.encodeLine(RPCRequestOut(id: nil, method: "rpc.subscribe", params: Empty())) {
            writer.send(line)
        }
    }

    private func maintain() async {
        var backoff = minBackoff
        while !Task.isCancelled && !state.withLock({ $0.closed }) {
            let connection: Connection
            let reader: LineReader
            do {
                connection = try await Connection.connect(to: address, loop: loop, deadline: deadline(after: 2))
                reader = LineReader(connection: connection, maxBytes: 64 << 20)
                if let secret {
                    do {
                        try await RPCAuth.prove(connection, reader: reader, secret: secret)
                    } catch {
                        connection.close()
                        throw error
                    }
                }
            } catch {
                lastFailure.withLock { $0 = "\(error)" }
                try? await loop.sleep(seconds: backoff)
                backoff = min(backoff * 2, maxBackoff)
                continue
            }
            lastFailure.withLock { $0 = nil }
            backoff = minBackoff
            let writer = QueuedWriter(connection: connection, loop: loop)
            let (waiters, subscribed, onConnect) = state.withLock { s in
                s.writer = writer
                defer { s.connectWaiters = [:] }
                return (Array(s.connectWaiters.values), s.subscribed, s.connectHandler)
            }
            if subscribed { sendSubscribe(writer) }
            for w in waiters {
                loop.cancelTimer(w.timer)
                w.continuation.resume(returning: writer)
            }
            onConnect?()
            await read(reader)
            let lost = state.withLock { s in
                s.writer = nil
                s.abandoned = [:]
                defer { s.pending = [:] }
                return Array(s.pending.values)
            }
            for p in lost {
                loop.cancelTimer(p.timer)
                p.continuation.resume(throwing: RPCError.connectionLost(method: p.method))
            }
            await writer.finish()
            connection.close()
        }
    }

    private func read(_ reader: LineReader) async {
        while true {
            guard let line = try? await reader.next() else { return }
            switch line {
            case .end:
                return
            case .tooLong:
                continue
            case .line(let bytes):
                guard let head = try? RPCIncoming(line: bytes), head.isObject else { continue }
                if let method = head.method {
                    for handler in state.withLock({ $0.notificationHandlers }) { handler(method, head.params) }
                } else if case .number(let id)? = head.id {
                    enum Owner { case caller(Pending), late(@Sendable (RPCIncoming) -> Void), none }
                    let owner = state.withLock { s -> Owner in
                        if let p = s.pending.removeValue(forKey: id) { return .caller(p) }
                        if let late = s.abandoned.removeValue(forKey: id) { return .late(late) }
                        return .none
                    }
                    switch owner {
                    case .caller(let p):
                        loop.cancelTimer(p.timer)
                        p.continuation.resume(returning: head)
                    case .late(let handler):
                        handler(head)
                    case .none:
                        break
                    }
                }
            }
        }
    }
}
