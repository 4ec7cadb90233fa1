import Glibc
import Synchronization

/// Errors of a WebSocket's sending side.
public enum WebSocketError: Error, Sendable, Equatable {
    /// The connection is closing or closed: nothing more can be sent.
    case closed
}

/// The server end of one WebSocket connection (RFC 6455), over a connection the HTTP server handed
/// over after the opening handshake (`WebSocketHandshake.response`).
///
/// Receiving is one task's loop: `receive()` returns whole messages and answers pings and the Close
/// handshake itself. Sending may come from any number of tasks at once: frames are queued in order
/// and written by one task (`QueuedWriter`), and `send` waits while more than
/// `Configuration.sendBufferBytes` are unwritten, so a client that reads slowly slows its producers
/// instead of growing memory. A connection that breaks the protocol is failed with the code its fault
/// calls for (1002, 1007, 1009) and nothing after the fault is read. An idle peer is pinged every
/// `pingInterval` seconds and dropped when nothing at all arrives for another interval.
public final class WebSocket: @unchecked Sendable {
    // @unchecked Sendable: `connection`, `input`, `reader` and the idle bookkeeping are used only by
    // the task that calls `receive()` and then `finish()` (one at a time, on the connection's loop);
    // the writer is thread-safe; `phase` is behind a Mutex.

    /// Limits and timers, each overridable from `app_config.json` (`http.websocket_*`).
    public struct Configuration: Sendable {
        /// The largest message accepted (1009 beyond it).
        public var maxMessageBytes = 16 << 20
        /// Seconds of silence before the peer is pinged, and again before it is dropped (0 = never).
        public var pingInterval: Double = 30
        /// How long a Close handshake waits for the peer's Close.
        public var closeTimeout: Double = 5
        /// Unwritten bytes above which `send` waits.
        public var sendBufferBytes = 1 << 20
        /// Longest a write may wait for the peer to read.
        public var writeTimeout: Double = 60
        public init() {}
    }

    /// A received message.
    public enum Message: Sendable, Equatable {
        case text(String)
        case binary([UInt8])
    }

    private enum Phase: Sendable, Equatable {
        case open
        /// This side sent its Close; waiting for the peer's until the deadline.
        case closing(deadline: UInt64)
        case closed
    }

    public let configuration: Configuration
    private let connection: Connection
    private let input: ByteBuffer
    private var reader: WebSocketReader
    private let writer: QueuedWriter
    private let phase = Mutex(Phase.open)
    private let closeInfo = Mutex<(code: UInt16, reason: String)?>(nil)
    private var lastHeard = monotonicNanos()
    private var pingOutstanding = false

    /// Takes over an upgraded connection; its writes run on the connection's own loop.
    init(_ upgraded: HTTPUpgradedConnection, configuration: Configuration) {
        self.configuration = configuration
        connection = upgraded.connection
        input = upgraded.input
        reader = WebSocketReader(maxMessageBytes: configuration.maxMessageBytes, requireMask: true)
        writer = QueuedWriter(connection: upgraded.connection, loop: upgraded.connection.loop, maxPending: max(64 << 20, configuration.sendBufferBytes * 4),
                              writeTimeout: configuration.writeTimeout)
    }

    /// How the connection ended: the code and reason of the peer's Close, of the fault this side
    /// failed it with, or 1006 when it dropped without one. Nil while open.
    public var closeStatus: (code: UInt16, reason: String)? { closeInfo.withLock { $0 } }

    /// Whether messages can still be sent.
    public var isOpen: Bool { phase.withLock { $0 == .open } }

    // MARK: Receiving

    /// The next message, or nil once the connection has closed (the peer's Close was answered, a
    /// protocol fault failed it, or the peer went away). Only one task may receive.
    public func receive() async throws -> Message? {
        while true {
            if input.readableCount > 0 {
                let result = reader.next(input.readable)
                switch result {
                case .needMore(let consumed):
                    input.consume(consumed)
                case .failure(let error):
                    input.clear()
                    fail(error)
                    return nil
                case .event(let event, let consumed):
                    input.consume(consumed)
                    switch event {
                    case .message(let opcode, let payload):
                        guard isOpen else { continue }  // after our Close, data is discarded (§1.4)
                        return opcode == .text ? .text(String(decoding: payload, as: UTF8.self)) : .binary(payload)
                    case .ping(let payload):
                        if isOpen { writer.send(WebSocketFrame.encode(.pong, payload)) }
                    case .pong:
                        pingOutstanding = false
                    case .close(let code, let reason):
                        peerClosed(code: code, reason: reason)
                        return nil
                    }
                    continue
                }
            }
            if phase.withLock({ $0 == .closed }) { return nil }
            let n: Int
            do {
                n = try await connection.read(into: input, deadline: readDeadline())
            } catch EventLoopError.timedOut {
                if case .closing = phase.withLock({ $0 }) {
                    ended(code: WebSocketCloseCode.abnormal, reason: "the peer did not answer the close handshake")
                    return nil
                }
                if pingOutstanding {
                    ended(code: WebSocketCloseCode.abnormal, reason: "the peer sent nothing for \(2 * configuration.pingInterval) s")
                    return nil
                }
                pingOutstanding = true
                lastHeard = monotonicNanos()
                writer.send(WebSocketFrame.encode(.ping, Array("keepalive".utf8)))
                continue
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                ended(code: WebSocketCloseCode.abnormal, reason: "the connection failed: \(error)")
                return nil
            }
            if n == 0 {
                ended(code: WebSocketCloseCode.abnormal, reason: "the peer closed the connection without a close frame")
                return nil
            }
            lastHeard = monotonicNanos()
        }
    }

    private func readDeadline() -> UInt64 {
        if case .closing(let until) = phase.withLock({ $0 }) { return until }
        guard configuration.pingInterval > 0 else { return 0 }
        return lastHeard &+ UInt64(configuration.pingInterval * 1e9)
    }

    /// The peer's Close: answered with the same code (§5.5.1) unless this side sent its own first.
    private func peerClosed(code: UInt16?, reason: String) {
        let wasOpen = phase.withLock { p -> Bool in
            defer { p = .closed }
            return p == .open
        }
        if wasOpen {
            writer.send(WebSocketFrame.encode(.close, code.map { WebSocketFrame.closePayload(code: $0, reason: "") } ?? []))
        }
        closeInfo.withLock { $0 = $0 ?? (code ?? WebSocketCloseCode.noStatus, reason) }
    }

    /// Fails the connection (§7.1.7): a Close with the fault's code, and nothing more is read.
    private func fail(_ error: WebSocketProtocolError) {
        let wasOpen = phase.withLock { p -> Bool in
            defer { p = .closed }
            return p == .open
        }
        if wasOpen { writer.send(WebSocketFrame.encode(.close, WebSocketFrame.closePayload(code: error.code, reason: error.reason))) }
        closeInfo.withLock { $0 = $0 ?? (error.code, error.reason) }
    }

    private func ended(code: UInt16, reason: String) {
        phase.withLock { $0 = .closed }
        closeInfo.withLock { $0 = $0 ?? (code, reason) }
    }

    // MARK: Sending

    /// Sends a text message, waiting while the send buffer is full. Throws `WebSocketError.closed`
    /// once the connection is closing.
    public func send(text: String) async throws {
        try await send(.text, Array(text.utf8))
    }

    /// Sends a text message already encoded as UTF-8.
    public func send(textBytes: [UInt8]) async throws {
        try await send(.text, textBytes)
    }

    /// Sends a binary message.
    public func send(binary: [UInt8]) async throws {
        try await send(.binary, binary)
    }

    private func send(_ opcode: WebSocketOpcode, _ payload: [UInt8]) async throws {
        guard isOpen else { throw WebSocketError.closed }
        do {
            try await writer.send(WebSocketFrame.encode(opcode, payload), waitingBelow: configuration.sendBufferBytes)
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            throw WebSocketError.closed
        }
    }

    /// Starts the Close handshake (§7.1.2): sends Close with `code`; the receiving task then reads
    /// until the peer's Close (or `closeTimeout`) and `receive()` returns nil. Later calls do nothing.
    public func close(code: UInt16 = WebSocketCloseCode.normal, reason: String = "") {
        let until = deadline(after: configuration.closeTimeout)
        let wasOpen = phase.withLock { p -> Bool in
            guard p == .open else { return false }
            p = .closing(deadline: until)
            return true
        }
        if wasOpen {
            closeInfo.withLock { $0 = $0 ?? (code, reason) }
            writer.send(WebSocketFrame.encode(.close, WebSocketFrame.closePayload(code: code, reason: reason)))
        }
    }

    /// Ends the connection once its session is over: a Close if none was sent (1000, or 1001 "going
    /// away" when the server is shutting the session down), the peer's Close awaited, the last frames
    /// written, the writer stopped. The HTTP server then closes the socket. Called by
    /// `WebSocketHandshake.response` after the session returns.
    func finish() async {
        close(code: Task.isCancelled ? WebSocketCloseCode.goingAway : WebSocketCloseCode.normal)
        while !phase.withLock({ $0 == .closed }) {
            guard (try? await receive()) != nil else { break }
        }
        phase.withLock { $0 = .closed }
        let until = deadline(after: configuration.closeTimeout)
        _ = try? await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await self.writer.waitUntilUnwritten(atMost: 0) }
            group.addTask { try await self.writer.loop.sleep(until: until) }
            _ = try await group.next()
            group.cancelAll()
        }
        await writer.finish()
    }
}
