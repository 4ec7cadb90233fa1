import Glibc
import Synchronization

/// Serializes outgoing messages on one connection. Any thread may `send`; the bytes are queued and
/// written by one task on the connection's event loop, so writes never interleave and the socket is
/// only touched from the loop thread. A peer that stops reading is dropped once `maxPending` bytes
/// are queued, so a stuck subscriber cannot grow memory without bound.
final class MessageWriter: @unchecked Sendable {
    // @unchecked Sendable: `connection` (not Sendable) is used only by tasks on `loop` (the drain task
    // and the connection's reader), which `loop.assertInLoop()` checks where it is touched; every other
    // field is inside `state`.
    private struct State {
        var pending: [UInt8] = []
        var writing = false
        var closed = false
    }

    let connection: Connection
    let loop: EventLoop
    let maxPending: Int
    private let state = Mutex(State())

    init(connection: Connection, loop: EventLoop, maxPending: Int = 64 << 20) {
        self.connection = connection
        self.loop = loop
        self.maxPending = maxPending
    }

    var isClosed: Bool { state.withLock { $0.closed } }

    /// Queues one encoded message (ending in a newline). Returns false if the connection is closed.
    @discardableResult
    func send(_ bytes: [UInt8]) -> Bool {
        enum Outcome { case closed, queued, startDrain, overflow }
        let outcome = state.withLock { s -> Outcome in
            if s.closed { return .closed }
            if s.pending.count + bytes.count > maxPending {
                s.closed = true
                s.pending = []
                return .overflow
            }
            s.pending.append(contentsOf: bytes)
            if s.writing { return .queued }
            s.writing = true
            return .startDrain
        }
        switch outcome {
        case .closed: return false
        case .queued: return true
        case .overflow:
            Task(executorPreference: loop) { self.shutdown() }
            return false
        case .startDrain:
            // On the loop thread, write at once without a task hop (one RPC's latency is two such
            // hops); whatever the socket does not take now is left to the drain task.
            if loop.inLoop && writeNow() { return true }
            Task(executorPreference: loop) { await self.drain() }
            return true
        }
    }

    /// Tries to write everything pending without blocking. True if all went out (writing ends).
    private func writeNow() -> Bool {
        loop.assertInLoop("a message writer's connection")
        guard connection.fd >= 0 else { return false }
        let chunk = state.withLock { s -> [UInt8] in
            defer { s.pending = [] }
            return s.pending
        }
        var offset = 0
        while offset < chunk.count {
            let n = chunk.withUnsafeBytes { Glibc.send(connection.fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT)) }
            if n > 0 {
                offset += n
            } else if n < 0 && errno == EINTR {
                continue
            } else {
                break
            }
        }
        return state.withLock { s -> Bool in
            if offset < chunk.count {
                s.pending = Array(chunk[offset...]) + s.pending
                return false
            }
            if s.pending.isEmpty {
                s.writing = false
                return true
            }
            return false
        }
    }

    private func drain() async {
        while true {
            let chunk = state.withLock { s -> [UInt8]? in
                if s.pending.isEmpty || s.closed {
                    s.writing = false
                    return nil
                }
                defer { s.pending = [] }
                return s.pending
            }
            guard let chunk else { return }
            loop.assertInLoop("a message writer's connection")
            do {
                try await connection.write(chunk)
            } catch {
                state.withLock { s in
                    s.closed = true
                    s.pending = []
                    s.writing = false
                }
                shutdown()
                return
            }
        }
    }

    /// Shuts the socket down both ways (the reader then sees end of stream and cleans up). Any thread:
    /// `shutdown(2)` is safe on a live descriptor, and the reader closes it only after `finish()`.
    func shutdown() {
        if connection.fd >= 0 { Glibc.shutdown(connection.fd, Int32(SHUT_RDWR)) }
    }

    /// Marks the writer closed and waits (briefly) for an in-flight write to end; called by the reader
    /// before it closes the descriptor, so no wait is left on a closed fd.
    func finish() async {
        let busy = state.withLock { s -> Bool in
            s.closed = true
            s.pending = []
            return s.writing
        }
        if busy {
            shutdown()
            for _ in 0..<200 where state.withLock({ $0.writing }) {
                try? await loop.sleep(seconds: 0.005)
            }
        }
    }
}
