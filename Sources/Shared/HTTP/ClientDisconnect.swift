import Glibc

/// Notices that the client of a request has closed its connection while the handler waits for
/// something else before it answers (a model's load can take minutes): the wait is cancelled, so what
/// it holds — a place in a runner's queue, a load nobody wants any more — is given up at once instead
/// of when the answer would have been written.
///
/// Valid for the handler's call only: the server closes the connection, and its descriptor number can
/// be reused, only after the handler and its response body have finished.
public struct ClientDisconnect: Sendable {
    let fd: Int32

    /// Whether the client has closed (FIN) or reset the connection: a non-blocking one-byte peek.
    /// Bytes waiting to be read (an unread body, a pipelined request) hide a FIN behind them, so they
    /// count as the client still being there: never a false "gone".
    public var hasHappened: Bool {
        var byte: UInt8 = 0
        let n = recv(fd, &byte, 1, Int32(MSG_PEEK) | Int32(MSG_DONTWAIT))
        if n >= 0 { return n == 0 }
        let e = errno
        return e != EAGAIN && e != EWOULDBLOCK && e != EINTR
    }

    /// Runs `operation`; when the client goes away first (looked at every `interval` seconds), the
    /// operation is cancelled and `CancellationError` thrown.
    public func cancelling<T: Sendable>(every interval: Double = 0.05, loop: EventLoop = .shared,
                                        _ operation: @escaping @Sendable () async throws -> T) async throws -> T {
        let probe = self
        return try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask { try await operation() }
            group.addTask {
                while !probe.hasHappened { try await loop.sleep(seconds: interval) }
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let value = first else { throw CancellationError() }
            return value
        }
    }
}
