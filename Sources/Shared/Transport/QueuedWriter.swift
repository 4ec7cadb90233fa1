import Glibc
import Synchronization

/// Serializes outgoing bytes on one connection for protocols whose messages are produced by many
/// tasks at once (JSON-RPC replies and notifications, WebSocket frames). Any thread may `send`; the
/// bytes are queued and written by one task on the connection's event loop, so messages never
/// interleave and the socket is only touched from the loop thread.
///
/// Two bounds: a sender that awaits `send(_:waitingBelow:)` is held back while more than that many
/// bytes are unwritten (backpressure: a slow reader slows its producer down instead of growing
/// memory), and a peer that lets `maxPending` bytes queue up anyway (a subscriber to notifications
/// that stopped reading) is dropped.
final class QueuedWriter: @unchecked Sendable {
    // @unchecked Sendable: `connection` (not Sendable) is used only by tasks on `loop` (the drain task
    // and the connection's reader), which `loop.assertInLoop()` checks where it is touched; every other
    // field is inside `state`.
    private struct State {
        var pending: [UInt8] = []
        /// Bytes the drain task took and has not finished writing.
        var inFlight = 0
        var writing = false
        var closed = false
        var nextWaiter = 0
        /// Senders held back, each with the level it waits for.
        var waiters: [(id: Int, below: Int, continuation: CheckedContinuation<Void, any Error>)] = []

        var unwritten: Int { pending.count + inFlight }

        /// Takes the waiters whose level is reached (all of them once closed).
        mutating func releasable() -> [(CheckedContinuation<Void, any Error>, Bool)] {
            var out: [(CheckedContinuation<Void, any Error>, Bool)] = []
            var kept: [(id: Int, below: Int, continuation: CheckedContinuation<Void, any Error>)] = []
            let level = unwritten
            for w in waiters {
                if closed || level <= w.below { out.append((w.continuation, closed)) } else { kept.append(w) }
            }
            waiters = kept
            return out
        }
    }

    let connection: Connection
    let loop: EventLoop
    let maxPending: Int
    /// Longest a write may wait for the peer to read before the connection is dropped (0 = none).
    let writeTimeout: Double
    private let state = Mutex(State())

    init(connection: Connection, loop: EventLoop, maxPending: Int = 64 << 20, writeTimeout: Double = 0) {
        self.connection = connection
        self.loop = loop
        self.maxPending = maxPending
        self.writeTimeout = writeTimeout
    }

    var isClosed: Bool { state.withLock { $0.closed } }

    /// Queues one encoded message. Returns false if the connection is closed (or just overflowed).
    @discardableResult
    func send(_ bytes: [UInt8]) -> Bool {
        enum Outcome { case closed, queued, startDrain, overflow }
        let outcome = state.withLock { s -> Outcome in
            if s.closed { return .closed }
            if s.unwritten + bytes.count > maxPending {
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
            resumeWaiters()
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

    /// Queues one message, then waits while more than `highWater` bytes are unwritten: the sender
    /// goes no faster than the peer reads. Throws `SocketError.closed` when the connection is (or
    /// becomes, while waiting) closed, and `CancellationError` when the sender is cancelled.
    func send(_ bytes: [UInt8], waitingBelow highWater: Int) async throws {
        guard send(bytes) else { throw SocketError.closed }
        try await waitUntilUnwritten(atMost: highWater)
    }

    /// Waits until at most `level` bytes are unwritten (0: everything has reached the socket).
    func waitUntilUnwritten(atMost level: Int) async throws {
        let id = state.withLock { s -> Int in
            s.nextWaiter += 1
            return s.nextWaiter
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let now = state.withLock { s -> Bool? in
                    if s.closed { return false }
                    if s.unwritten <= level { return true }
                    s.waiters.append((id, level, continuation))
                    return nil
                }
                switch now {
                case true?: continuation.resume()
                case false?: continuation.resume(throwing: SocketError.closed)
                case nil: if Task.isCancelled { cancelWaiter(id) }
                }
            }
        } onCancel: {
            cancelWaiter(id)
        }
    }

    private func cancelWaiter(_ id: Int) {
        let continuation = state.withLock { s -> CheckedContinuation<Void, any Error>? in
            guard let i = s.waiters.firstIndex(where: { $0.id == id }) else { return nil }
            return s.waiters.remove(at: i).continuation
        }
        continuation?.resume(throwing: CancellationError())
    }

    private func resumeWaiters() {
        for (continuation, closed) in state.withLock({ $0.releasable() }) {
            if closed { continuation.resume(throwing: SocketError.closed) } else { continuation.resume() }
        }
    }

    /// Tries to write everything pending without blocking. True if all went out (writing ends).
    private func writeNow() -> Bool {
        loop.assertInLoop("a queued writer's connection")
        guard connection.fd >= 0 else { return false }
        let chunk = state.withLock { s -> [UInt8] in
            defer { s.pending = [] }
            s.inFlight = s.pending.count
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
        let done = state.withLock { s -> Bool in
            s.inFlight = 0
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
        resumeWaiters()
        return done
    }

    private func drain() async {
        while true {
            let chunk = state.withLock { s -> [UInt8]? in
                if s.pending.isEmpty || s.closed {
                    s.writing = false
                    return nil
                }
                defer { s.pending = [] }
                s.inFlight = s.pending.count
                return s.pending
            }
            guard let chunk else { return resumeWaiters() }
            loop.assertInLoop("a queued writer's connection")
            do {
                try await connection.write(chunk, deadline: writeTimeout > 0 ? deadline(after: writeTimeout) : 0)
                state.withLock { $0.inFlight = 0 }
                resumeWaiters()
            } catch {
                state.withLock { s in
                    s.closed = true
                    s.pending = []
                    s.inFlight = 0
                    s.writing = false
                }
                resumeWaiters()
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
    /// before it closes the descriptor, so no wait is left on a closed fd. What is still queued is
    /// dropped: call `waitUntilUnwritten(atMost: 0)` first for a last message that must go out.
    func finish() async {
        let busy = state.withLock { s -> Bool in
            s.closed = true
            s.pending = []
            return s.writing
        }
        resumeWaiters()
        if busy {
            shutdown()
            for _ in 0..<200 where state.withLock({ $0.writing }) {
                try? await loop.sleep(seconds: 0.005)
            }
        }
    }
}
