import Glibc

/// Listening sockets handed down by whoever started this process, by the systemd socket-activation
/// convention (sd_listen_fds(3)): descriptors 3 ..< 3 + `LISTEN_FDS`, named by the colon-separated
/// `LISTEN_FDNAMES`, meant for the process whose pid is `LISTEN_PID`.
///
/// The launcher binds the public ports once and hands them to each gateway it starts, so a gateway
/// that crashes or restarts leaves new connections waiting in the kernel's backlog instead of
/// refusing them. `posix_spawn` cannot know the child's pid before it runs, so the launcher sets
/// `LISTEN_PID` to its own pid: descriptors are taken when `LISTEN_PID` is this process (systemd) or
/// its parent (the launcher), never when they were merely inherited from further up.
public struct InheritedSockets: Sendable {
    /// The first inherited descriptor (`SD_LISTEN_FDS_START`).
    public static let firstDescriptor: Int32 = 3

    /// One inherited listening socket.
    public struct Socket: Sendable, Equatable {
        public let fd: Int32
        /// Its `LISTEN_FDNAMES` entry ("unknown" when none was given, as systemd names them).
        public let name: String
        /// The TCP port it is bound to (0 for other kinds).
        public let port: UInt16
    }

    public private(set) var sockets: [Socket]

    public init(sockets: [Socket]) { self.sockets = sockets }

    /// Reads the variables once and unsets them, so nothing this process starts sees them. Each taken
    /// descriptor is made close-on-exec and non-blocking.
    public static func take() -> InheritedSockets {
        defer {
            unsetenv("LISTEN_FDS")
            unsetenv("LISTEN_PID")
            unsetenv("LISTEN_FDNAMES")
        }
        guard let countText = getenv("LISTEN_FDS").map({ String(cString: $0) }), let count = Int32(countText), count > 0,
              let pidText = getenv("LISTEN_PID").map({ String(cString: $0) }), let pid = pid_t(pidText),
              pid == getpid() || pid == getppid() else { return InheritedSockets(sockets: []) }
        let names = getenv("LISTEN_FDNAMES").map { String(cString: $0).split(separator: ":", omittingEmptySubsequences: false).map(String.init) } ?? []
        var sockets: [Socket] = []
        for i in 0..<count {
            let fd = firstDescriptor + i
            guard fcntl(fd, F_GETFD) >= 0 else { continue }
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            let name = Int(i) < names.count && !names[Int(i)].isEmpty ? names[Int(i)] : "unknown"
            sockets.append(Socket(fd: fd, name: name, port: Sockets.localPort(fd)))
        }
        return InheritedSockets(sockets: sockets)
    }

    /// Takes the socket for `name`, or else the one bound to `port`: a launcher names each socket by
    /// its config key; a systemd `.socket` unit may name them (`FileDescriptorName=`) or not.
    public mutating func claim(name: String, port: UInt16) -> Int32? {
        let index = sockets.firstIndex { $0.name == name } ?? sockets.firstIndex { $0.port == port && port != 0 }
        guard let index else { return nil }
        return sockets.remove(at: index).fd
    }

    /// Closes what nobody claimed (a port the config no longer names).
    public mutating func closeUnclaimed() {
        for s in sockets { close(s.fd) }
        sockets = []
    }

    /// The environment that hands `names.count` descriptors, placed at 3, 4, … by the spawner, to a
    /// child of this process.
    public static func environment(names: [String]) -> [String: String] {
        ["LISTEN_FDS": String(names.count), "LISTEN_PID": String(getpid()), "LISTEN_FDNAMES": names.joined(separator: ":")]
    }
}
