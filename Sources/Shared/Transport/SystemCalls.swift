import Glibc

/// A failed system call, carrying the call's name and `errno`, so a log line says exactly what broke.
public struct SystemError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The system call or operation that failed, e.g. `bind`.
    public let call: String
    /// The `errno` value at the time of failure.
    public let errno: Int32

    public init(_ call: String, errno: Int32 = Glibc.errno) {
        self.call = call
        self.errno = errno
    }

    public var description: String {
        "\(call): \(String(cString: strerror(errno))) (errno \(errno))"
    }
}

/// Functions glibc has but the Swift `Glibc` module does not export (they sit behind `_GNU_SOURCE`).
/// Resolved once with `dlsym`, so the package needs no C target. Each is optional: a missing symbol
/// falls back to the portable two-step form.
enum GNU {
    typealias Accept4 = @convention(c) (Int32, UnsafeMutablePointer<sockaddr>?, UnsafeMutablePointer<socklen_t>?, Int32) -> Int32
    typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>?, Int32) -> Int32

    nonisolated(unsafe) private static let handle = dlopen(nil, RTLD_NOW)

    /// `accept4(2)`: accept with `SOCK_CLOEXEC | SOCK_NONBLOCK` atomically, so no child spawned
    /// concurrently can inherit the new descriptor.
    static let accept4: Accept4? = dlsym(handle, "accept4").map { unsafeBitCast($0, to: Accept4.self) }

    /// `posix_spawn_file_actions_addclosefrom_np` (glibc 2.34): close every inherited descriptor ≥ n in the child.
    static let addCloseFrom: AddCloseFrom? =
        dlsym(handle, "posix_spawn_file_actions_addclosefrom_np").map { unsafeBitCast($0, to: AddCloseFrom.self) }

    typealias MallocTrim = @convention(c) (Int) -> Int32
    /// `malloc_trim(3)`: return free heap memory to the system (see `MemoryTrim`).
    static let mallocTrim: MallocTrim? = dlsym(handle, "malloc_trim").map { unsafeBitCast($0, to: MallocTrim.self) }
}

/// Monotonic time in nanoseconds (`CLOCK_MONOTONIC`): the clock for every deadline and duration,
/// immune to wall-clock changes.
@inline(__always)
public func monotonicNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}

/// Milliseconds since the Unix epoch (`CLOCK_REALTIME`): timestamps shown to people and clients.
public func unixMillis() -> Int {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return ts.tv_sec * 1000 + ts.tv_nsec / 1_000_000
}

/// A deadline `seconds` from now on the monotonic clock.
@inline(__always)
public func deadline(after seconds: Double) -> UInt64 {
    monotonicNanos() &+ UInt64(max(0, seconds) * 1_000_000_000)
}

/// Sets `FD_CLOEXEC` and, if asked, `O_NONBLOCK` on a descriptor.
func configureDescriptor(_ fd: Int32, nonBlocking: Bool) {
    let fdFlags = fcntl(fd, F_GETFD)
    _ = fcntl(fd, F_SETFD, fdFlags | FD_CLOEXEC)
    if nonBlocking {
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
    }
}

/// Ignore SIGPIPE process-wide: a peer that closes early must turn into `EPIPE`, never a dead process.
/// Sends also pass `MSG_NOSIGNAL`; this covers `write(2)` on pipes.
public func ignoreSIGPIPE() {
    signal(SIGPIPE, SIG_IGN)
}

extension String {
    /// The text of a C buffer filled by a system call, up to its first NUL.
    public init(cBuffer buffer: [CChar]) {
        self.init(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
