import Glibc
import Synchronization

/// A listening socket whose `accept` suspends on the event loop.
public final class Listener: Sendable {
    private let descriptor: Atomic<Int32>

    /// The listening descriptor; -1 once closed (closing is atomic: an accept racing a close sees -1).
    public var fd: Int32 { descriptor.load(ordering: .acquiring) }
    /// The address asked for (a TCP port 0 stays 0 here; see `port`).
    public let address: SocketAddress
    /// The loop that wakes `accept`.
    public let loop: EventLoop
    /// The bound TCP port (useful with port 0), or 0 for Unix sockets.
    public let port: UInt16

    public init(_ address: SocketAddress, loop: EventLoop, backlog: Int32 = 1024) throws {
        self.address = address
        self.loop = loop
        let fd = try Sockets.listen(address, backlog: backlog)
        descriptor = Atomic(fd)
        if case .tcp = address { port = Sockets.localPort(fd) } else { port = 0 }
        loop.adopt(fd)
    }

    /// Takes over a socket that is already listening (one handed down by the launcher or systemd:
    /// `InheritedSockets`). `address` is what it stands for, for logs and messages.
    public init(adopting fd: Int32, address: SocketAddress, loop: EventLoop) {
        self.address = address
        self.loop = loop
        descriptor = Atomic(fd)
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        if case .tcp = address { port = Sockets.localPort(fd) } else { port = 0 }
        loop.adopt(fd)
    }

    /// Waits for the next connection. The new descriptor is close-on-exec and non-blocking.
    public func accept() async throws -> Connection {
        while true {
            guard fd >= 0 else { throw SocketError.closed }
            let client: Int32
            if let accept4 = GNU.accept4 {
                client = accept4(fd, nil, nil, Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue))
            } else {
                client = Glibc.accept(fd, nil, nil)
            }
            if client >= 0 {
                let isTCP: Bool = if case .tcp = address { true } else { false }
                return Connection(fd: client, loop: loop, isTCP: isTCP)
            }
            let e = errno
            switch e {
            case EAGAIN, EWOULDBLOCK:
                try await loop.wait(fd, for: .read)
            case EINTR, ECONNABORTED, EPROTO:
                continue
            case EMFILE, ENFILE, ENOBUFS, ENOMEM:
                // Out of descriptors: pause instead of spinning; connections wait in the backlog.
                try await loop.sleep(seconds: 0.05)
            default:
                throw SystemError("accept", errno: e)
            }
        }
    }

    /// Closes the socket (an `accept` waiting fails with `badDescriptor`) and, for a Unix socket,
    /// removes its file.
    public func close() {
        let fd = descriptor.exchange(-1, ordering: .acquiringAndReleasing)
        guard fd >= 0 else { return }
        loop.close(fd)
        if case .unix(let path) = address { unlink(path) }
    }
}
