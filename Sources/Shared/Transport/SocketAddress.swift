import Glibc

/// Where a socket listens or connects: a TCP host and port, or a Unix socket path.
public enum SocketAddress: Sendable, Hashable, CustomStringConvertible {
    case tcp(host: String, port: UInt16)
    case unix(path: String)

    public var description: String {
        switch self {
        case .tcp(let host, let port): host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        case .unix(let path): "unix:\(path)"
        }
    }

    /// The longest Unix socket path the kernel accepts (`sun_path` is 108 bytes with its NUL).
    public static let maxUnixPathBytes = 107

    /// Calls `body` with the C form of the address. Host names other than numeric addresses and
    /// `localhost` are resolved with `getaddrinfo` (first IPv4/IPv6 result).
    func withSockAddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t, Int32) throws -> R) throws -> R {
        switch self {
        case .unix(let path):
            var addr = sockaddr_un()
            addr.sun_family = sa_family_t(AF_UNIX)
            let bytes = Array(path.utf8)
            guard bytes.count <= Self.maxUnixPathBytes else {
                throw SocketError.pathTooLong(path)
            }
            withUnsafeMutableBytes(of: &addr.sun_path) { raw in
                raw.copyBytes(from: bytes)
                raw[bytes.count] = 0
            }
            let len = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + 1)
            return try withUnsafePointer(to: &addr) {
                try $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { try body($0, len, AF_UNIX) }
            }
        case .tcp(let host, let port):
            let name = host == "localhost" ? "127.0.0.1" : host
            var v4 = sockaddr_in()
            if inet_pton(AF_INET, name, &v4.sin_addr) == 1 {
                v4.sin_family = sa_family_t(AF_INET)
                v4.sin_port = port.bigEndian
                return try withUnsafePointer(to: &v4) {
                    try $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        try body($0, socklen_t(MemoryLayout<sockaddr_in>.size), AF_INET)
                    }
                }
            }
            var v6 = sockaddr_in6()
            let bare = name.hasPrefix("[") && name.hasSuffix("]") ? String(name.dropFirst().dropLast()) : name
            if inet_pton(AF_INET6, bare, &v6.sin6_addr) == 1 {
                v6.sin6_family = sa_family_t(AF_INET6)
                v6.sin6_port = port.bigEndian
                return try withUnsafePointer(to: &v6) {
                    try $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        try body($0, socklen_t(MemoryLayout<sockaddr_in6>.size), AF_INET6)
                    }
                }
            }
            var hints = addrinfo()
            hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
            var result: UnsafeMutablePointer<addrinfo>?
            let rc = getaddrinfo(name, String(port), &hints, &result)
            guard rc == 0, let info = result else { throw SocketError.unresolvable(host) }
            defer { freeaddrinfo(result) }
            return try body(info.pointee.ai_addr, info.pointee.ai_addrlen, info.pointee.ai_family)
        }
    }
}

/// Errors of opening sockets, with enough context to tell the user what to change.
public enum SocketError: Error, CustomStringConvertible, Sendable, Equatable {
    case system(SystemError, SocketAddress)
    case addressInUse(SocketAddress)
    case pathTooLong(String)
    case unresolvable(String)
    case closed

    public var description: String {
        switch self {
        case .system(let e, let a): "\(a): \(e)"
        case .addressInUse(let a): "\(a) is already in use by another process"
        case .pathTooLong(let p): "unix socket path is longer than \(SocketAddress.maxUnixPathBytes) bytes: \(p) (use a shorter --state-dir)"
        case .unresolvable(let h): "cannot resolve host \(h)"
        case .closed: "connection closed"
        }
    }
}

/// Opening listening and connecting sockets. Every descriptor is close-on-exec and non-blocking.
public enum Sockets {
    /// Creates a listening socket. A stale Unix socket file (no process accepting on it) is replaced;
    /// a live one is `addressInUse`. For TCP, port 0 picks a free port (see `localPort`).
    public static func listen(_ address: SocketAddress, backlog: Int32 = 1024) throws -> Int32 {
        if case .unix(let path) = address {
            if access(path, F_OK) == 0 {
                if isUnixSocketLive(path) { throw SocketError.addressInUse(address) }
                unlink(path)
            }
        }
        return try address.withSockAddr { sa, len, family in
            let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
            guard fd >= 0 else { throw SocketError.system(SystemError("socket"), address) }
            if family != AF_UNIX {
                var one: Int32 = 1
                setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
            }
            if bind(fd, sa, len) != 0 {
                let e = errno
                close(fd)
                if e == EADDRINUSE { throw SocketError.addressInUse(address) }
                throw SocketError.system(SystemError("bind", errno: e), address)
            }
            if Glibc.listen(fd, backlog) != 0 {
                let e = errno
                close(fd)
                throw SocketError.system(SystemError("listen", errno: e), address)
            }
            return fd
        }
    }

    /// The TCP port a socket is bound to (for servers started on port 0).
    public static func localPort(_ fd: Int32) -> UInt16 {
        var storage = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        if Int32(storage.ss_family) == AF_INET6 {
            return withUnsafePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin6_port) } }
        }
        return withUnsafePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin_port) } }
    }

    /// Whether some process accepts connections on the Unix socket at `path` (a blocking probe;
    /// used only at startup).
    public static func isUnixSocketLive(_ path: String) -> Bool {
        guard let fd = try? SocketAddress.unix(path: path).withSockAddr({ sa, len, _ -> Int32 in
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { return -1 }
            if connect(fd, sa, len) != 0 { close(fd); return -1 }
            return fd
        }), fd >= 0 else { return false }
        close(fd)
        return true
    }

    /// Starts a non-blocking connect; returns the descriptor and whether the connection is still in progress.
    static func startConnect(_ address: SocketAddress) throws -> (fd: Int32, inProgress: Bool) {
        try address.withSockAddr { sa, len, family in
            let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
            guard fd >= 0 else { throw SocketError.system(SystemError("socket"), address) }
            if connect(fd, sa, len) == 0 { return (fd, false) }
            let e = errno
            if e == EINPROGRESS || e == EAGAIN { return (fd, true) }
            close(fd)
            throw SocketError.system(SystemError("connect", errno: e), address)
        }
    }

    /// Probes an idle TCP connection (after `idle` seconds, every `interval`, `count` times) so one to a
    /// machine that vanished without a FIN (a cut link) ends by itself, with what it held.
    public static func setKeepAlive(_ fd: Int32, idle: Int32 = 10, interval: Int32 = 3, count: Int32 = 3) {
        var one: Int32 = 1
        let size = socklen_t(MemoryLayout<Int32>.size)
        setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, size)
        var (i, n, c) = (idle, interval, count)
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_KEEPIDLE, &i, size)
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_KEEPINTVL, &n, size)
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_KEEPCNT, &c, size)
    }

    /// Disables Nagle's algorithm: responses and relayed events must leave at once.
    static func setNoDelay(_ fd: Int32) {
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
    }
}
