import Glibc
import Synchronization

/// The control connection a call arrived on. What a handler grants a caller (a runner lease) belongs
/// to this connection: the server reports the connection's end (`onDisconnect`), however it ends —
/// a clean close, a crash or `kill -9` of the caller — so the owner can release it.
public struct RPCCaller: Sendable, Hashable, CustomStringConvertible {
    /// Unique for the server's lifetime.
    public let connection: UInt64

    public init(connection: UInt64) { self.connection = connection }

    public var description: String { "connection \(connection)" }
}

/// A JSON-RPC 2.0 server on a Unix socket (and, authenticated, on TCP: `startTCP`): one JSON object per line, requests on one connection
/// handled concurrently, replies in completion order (matched by id). Clients that call
/// `rpc.subscribe` receive every `notify`.
///
/// Faults never end a connection: malformed JSON gets -32700, a non-request -32600, an unknown method
/// -32601, bad params -32602, and a line over `maxMessageBytes` (16 MiB) an error after it is skipped.
public final class RPCServer: Sendable {
    typealias RawHandler = @Sendable (RPCIncoming, RPCID?, RPCCaller) async throws -> [UInt8]

    /// The socket file.
    public let path: String
    let loop: EventLoop
    /// The longest accepted message.
    public let maxMessageBytes: Int
    private let handlers = Mutex<[String: RawHandler]>([:])
    private let subscribers = Mutex<[UInt64: QueuedWriter]>([:])
    /// Handler tasks by connection and request id, so `rpc.cancel` and a dropped connection cancel them.
    private let running = Mutex<[UInt64: [RPCID: Task<Void, Never>]]>([:])
    private let connections = ConnectionTable()
    private let listeners = Mutex<[Listener]>([])
    private let acceptTasks = Mutex<[Task<Void, Never>]>([])
    private let disconnectHandlers = Mutex<[@Sendable (RPCCaller) -> Void]>([])

    public init(path: String, loop: EventLoop = .shared, maxMessageBytes: Int = 16 << 20) {
        self.path = path
        self.loop = loop
        self.maxMessageBytes = maxMessageBytes
    }

    /// Implements `M` with `handler`. Throw `RPCFault` to answer with a specific error.
    public func register<M: RPCMethod>(_ method: M.Type, _ handler: @escaping @Sendable (M.Params) async throws -> M.Result) {
        register(method) { params, _ in try await handler(params) }
    }

    /// Implements `M` with a handler that also learns who called (to give what it grants an owner).
    public func register<M: RPCMethod>(_ method: M.Type, _ handler: @escaping @Sendable (M.Params, RPCCaller) async throws -> M.Result) {
        let name = M.name
        let raw: RawHandler = { message, id, caller in
            let params: M.Params
            do {
                if let p = try message.params(as: M.Params.self) {
                    params = p
                } else if let empty = Empty() as? M.Params {
                    params = empty
                } else {
                    throw RPCFault.invalidParams("\(name): params are required")
                }
            } catch let fault as RPCFault {
                throw fault
            } catch {
                throw RPCFault.invalidParams("\(name): \(describeDecodingError(error))")
            }
            let result = try await handler(params, caller)
            return try RPCCoding.encodeLine(RPCResultOut(id: id ?? .number(0), result: result))
        }
        handlers.withLock { $0[M.name] = raw }
    }

    /// Handles notification `N` (no reply). Params that do not decode are dropped.
    public func registerNotification<N: RPCNotification>(_ notification: N.Type, _ handler: @escaping @Sendable (N.Params) async -> Void) {
        let raw: RawHandler = { message, _, _ in
            if let p = try? message.params(as: N.Params.self) { await handler(p) }
            return []
        }
        handlers.withLock { $0[N.name] = raw }
    }

    /// Called once for every connection that ends, after its pending handlers were cancelled: the place
    /// where what was granted to that caller is released (leases die with their connection).
    public func onDisconnect(_ handler: @escaping @Sendable (RPCCaller) -> Void) {
        disconnectHandlers.withLock { $0.append(handler) }
    }

    /// Binds the socket (replacing a stale file) and starts accepting.
    public func start() throws {
        let listener = try Listener(.unix(path: path), loop: loop)
        chmod(path, 0o600)
        listeners.withLock { $0.append(listener) }
        let task = listener.acceptLoop(into: connections) { [self] connection, id in
            await serve(connection, id: id, reader: LineReader(connection: connection, maxBytes: maxMessageBytes))
        }
        acceptTasks.withLock { $0.append(task) }
    }

    /// Also serves the same methods on TCP (another machine's gateway), each connection only after it
    /// proves `secret` (`RPCAuth`); one that does not is told why and closed, having reached no handler.
    /// Returns the bound address's port (for port 0).
    @discardableResult
    public func startTCP(_ address: SocketAddress, secret: RPCSecret) throws -> UInt16 {
        let listener = try Listener(address, loop: loop)
        listeners.withLock { $0.append(listener) }
        let task = listener.acceptLoop(into: connections) { [self] connection, id in
            // A gateway whose link was cut sends no FIN: keepalive ends its connection, and its leases.
            Sockets.setKeepAlive(connection.fd)
            let reader = LineReader(connection: connection, maxBytes: RPCAuth.maxLineBytes)
            switch await RPCAuth.accept(connection, reader: reader, secret: secret) {
            case .success:
                reader.maxBytes = maxMessageBytes
                await serve(connection, id: id, reader: reader)
            case .failure(let error):
                onAuthFailure.withLock { $0 }?(error)
                connection.close()
            }
        }
        acceptTasks.withLock { $0.append(task) }
        return listener.port
    }

    private let onAuthFailure = Mutex<(@Sendable (RPCAuthError) -> Void)?>(nil)

    /// Told each TCP connection that failed the handshake (to log it).
    public func onAuthenticationFailure(_ handler: @escaping @Sendable (RPCAuthError) -> Void) { onAuthFailure.withLock { $0 = handler } }

    /// Stops accepting, drops every connection and removes the socket file.
    public func stop() async {
        for task in acceptTasks.withLock({ $0 }) {
            task.cancel()
            await task.value
        }
        listeners.withLock { $0.forEach { $0.close() } }
        connections.beginShutdown()
        connections.cancelAll()
        await connections.drain(until: deadline(after: 2), loop: loop)
    }

    /// Pushes a notification to every subscriber. Never blocks; a subscriber that cannot keep up is dropped.
    public func notify<N: RPCNotification>(_ notification: N.Type, _ params: N.Params) {
        guard let line = try? RPCCoding.encodeLine(RPCRequestOut(id: nil, method: N.name, params: params)) else { return }
        let targets = subscribers.withLock { Array($0.values) }
        for writer in targets { writer.send(line) }
    }

    /// Connections subscribed to notifications.
    public var subscriberCount: Int { subscribers.withLock { $0.count } }

    private func serve(_ connection: Connection, id: UInt64, reader: LineReader) async {
        let writer = QueuedWriter(connection: connection, loop: loop)
        while true {
            let line: LineReader.Line
            do {
                line = try await reader.next()
            } catch {
                break
            }
            switch line {
            case .end:
                break
            case .tooLong:
                writer.send(errorLine(nil, RPCFault(code: RPCFault.invalidRequestCode, message: "message is larger than \(maxMessageBytes) bytes")))
                continue
            case .line(let bytes):
                dispatch(bytes, writer: writer, connectionID: id)
                continue
            }
            break
        }
        _ = subscribers.withLock { $0.removeValue(forKey: id) }
        // The caller is gone: its pending handlers are cancelled (a queued acquire leaves its queue).
        running.withLock { $0.removeValue(forKey: id) }?.values.forEach { $0.cancel() }
        let caller = RPCCaller(connection: id)
        for handler in disconnectHandlers.withLock({ $0 }) { handler(caller) }
        await writer.finish()
        connection.close()
    }

    private func dispatch(_ bytes: [UInt8], writer: QueuedWriter, connectionID: UInt64) {
        let head: RPCIncoming
        do {
            head = try RPCIncoming(line: bytes)
        } catch {
            writer.send(errorLine(nil, RPCFault(code: RPCFault.parseErrorCode, message: "parse error: not valid JSON")))
            return
        }
        guard head.isObject else {
            writer.send(errorLine(nil, RPCFault(code: RPCFault.invalidRequestCode, message: "invalid request: expected a JSON-RPC 2.0 request object")))
            return
        }
        guard let method = head.method, head.jsonrpc == "2.0" else {
            if head.id != nil || head.method == nil {
                writer.send(errorLine(head.id, RPCFault(code: RPCFault.invalidRequestCode, message: "invalid request: \"jsonrpc\": \"2.0\" and \"method\" are required")))
            }
            return
        }
        if method == "rpc.cancel" {
            if let target = (try? head.params(as: CancelParams.self))??.id,
               let task = running.withLock({ $0[connectionID]?.removeValue(forKey: target) }) {
                task.cancel()
            }
            return
        }
        if method == "rpc.subscribe" {
            subscribers.withLock { $0[connectionID] = writer }
            if let id = head.id, let line = try? RPCCoding.encodeLine(RPCResultOut(id: id, result: Empty())) { writer.send(line) }
            return
        }
        guard let handler = handlers.withLock({ $0[method] }) else {
            if head.id != nil {
                writer.send(errorLine(head.id, RPCFault(code: RPCFault.methodNotFoundCode, message: "method not found: \(method)")))
            }
            return
        }
        let id = head.id
        let task = Task(executorPreference: loop) { [self] in
            do {
                let line = try await handler(head, id, RPCCaller(connection: connectionID))
                if id != nil { writer.send(line) }
            } catch let fault as RPCFault {
                if id != nil { writer.send(errorLine(id, fault)) }
            } catch is CancellationError {
                if id != nil { writer.send(errorLine(id, RPCFault(code: RPCFault.cancelledCode, message: "\(method): cancelled by the caller"))) }
            } catch {
                if id != nil { writer.send(errorLine(id, RPCFault.internalError(String(describing: error)))) }
            }
            if let id { running.withLock { _ = $0[connectionID]?.removeValue(forKey: id) } }
        }
        if let id {
            running.withLock { $0[connectionID, default: [:]][id] = task }
        }
    }

    private func errorLine(_ id: RPCID?, _ fault: RPCFault) -> [UInt8] {
        (try? RPCCoding.encodeLine(RPCErrorOut(id: id, error: fault))) ?? Array("{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32603,\"message\":\"encoding failed\"}}\n".utf8)
    }
}

/// `rpc.cancel` params: the id of the request to cancel.
struct CancelParams: Codable, Sendable {
    let id: RPCID
}

/// A short, user-facing account of a decoding failure: the JSON path and what was wrong.
public func describeDecodingError(_ error: any Error) -> String {
    func path(_ keys: [any CodingKey]) -> String {
        let p = keys.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
        return p.hasPrefix(".") ? String(p.dropFirst()) : (p.isEmpty ? "(root)" : p)
    }
    guard let error = error as? DecodingError else { return String(describing: error) }
    switch error {
    case .typeMismatch(let type, let ctx): return "\(path(ctx.codingPath)): expected \(typeName(type))"
    case .valueNotFound(let type, let ctx): return "\(path(ctx.codingPath)): expected \(typeName(type)), got null"
    case .keyNotFound(let key, let ctx): return "\(path(ctx.codingPath + [key])): required field is missing"
    case .dataCorrupted(let ctx):
        if !ctx.codingPath.isEmpty { return "\(path(ctx.codingPath)): \(ctx.debugDescription)" }
        return (ctx.underlyingError as? JSONSyntaxError).map { "not valid JSON: \($0)" } ?? "not valid JSON"
    @unknown default: return String(describing: error)
    }
}

private func typeName(_ type: Any.Type) -> String {
    switch type {
    case is String.Type: "a string"
    case is Int.Type, is Int32.Type, is Int64.Type, is UInt16.Type, is UInt64.Type: "an integer"
    case is Double.Type, is Float.Type: "a number"
    case is Bool.Type: "a boolean"
    default:
        String(describing: type).hasPrefix("Array") ? "an array" : (String(describing: type).hasPrefix("Dictionary") ? "an object" : "\(type)")
    }
}
