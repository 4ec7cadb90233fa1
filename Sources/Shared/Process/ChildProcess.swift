import Glibc
import Synchronization

/// How a child ended.
public enum ExitStatus: Sendable, Equatable, CustomStringConvertible {
    case exited(Int32)
    case signaled(Int32)

    public var description: String {
        switch self {
        case .exited(let code): "exited with code \(code)"
        case .signaled(let sig): "killed by signal \(sig)\(sig == SIGKILL ? " (SIGKILL)" : sig == SIGTERM ? " (SIGTERM)" : sig == SIGSEGV ? " (SIGSEGV)" : "")"
        }
    }

    /// Whether the child exited with code 0.
    public var isSuccess: Bool { self == .exited(0) }
}

/// Errors of spawning.
public enum SpawnError: Error, Sendable, CustomStringConvertible {
    case failed(executable: String, errno: Int32)

    public var description: String {
        switch self {
        case .failed(let exe, let e): "cannot start \(exe): \(String(cString: strerror(e)))"
        }
    }
}

/// A child process started with `posix_spawn` — never through a shell, never `Foundation.Process`
/// (on Linux, a `Foundation.Process` child spawned from a Task inherits a mask that blocks SIGTERM, and
/// its exit detection can hang when a grandchild keeps its pipe). The child gets an empty signal mask, default handlers, its own process group, and no
/// inherited descriptor beyond stdin/stdout/stderr.
///
/// Only this object reaps its pid, on a dedicated thread blocked in `waitpid(pid)`, and it never
/// signals a pid it has reaped, so a recycled pid can never be hit.
public final class ChildProcess: Sendable {
    /// Where a child's standard output and error go.
    public enum Output: Sendable {
        case inherit
        case null
        /// Appended to this file (created if needed).
        case file(String)
    }

    public let pid: pid_t
    /// The executable path.
    public let executable: String
    /// Monotonic ns when spawned.
    public let startedAt: UInt64

    private struct State {
        var status: ExitStatus?
        var waiters: [CheckedContinuation<ExitStatus, Never>] = []
    }

    private let state = Mutex(State())

    private init(pid: pid_t, executable: String) {
        self.pid = pid
        self.executable = executable
        startedAt = monotonicNanos()
    }

    /// Starts `executable` with `arguments` (argv[0] is the executable). `environment` nil inherits ours.
    /// `inheriting` descriptors become the child's 3, 4, … in that order (listening sockets handed
    /// down: `InheritedSockets`); every other descriptor beyond stderr is closed in the child.
    public static func spawn(_ executable: String, arguments: [String], environment: [String: String]? = nil,
                             output: Output = .inherit, newProcessGroup: Bool = true, inheriting: [Int32] = []) throws -> ChildProcess {
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var flags = Int32(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF)
        if newProcessGroup {
            flags |= Int32(POSIX_SPAWN_SETPGROUP)
            posix_spawnattr_setpgroup(&attr, 0)
        }
        posix_spawnattr_setflags(&attr, Int16(flags))
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attr, &empty)
        var defaults = sigset_t()
        sigfillset(&defaults)
        sigdelset(&defaults, SIGKILL)
        sigdelset(&defaults, SIGSTOP)
        posix_spawnattr_setsigdefault(&attr, &defaults)

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        switch output {
        case .inherit:
            break
        case .null:
            posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
            posix_spawn_file_actions_adddup2(&actions, 1, 2)
        case .file(let path):
            posix_spawn_file_actions_addopen(&actions, 1, path, O_WRONLY | O_CREAT | O_APPEND, 0o644)
            posix_spawn_file_actions_adddup2(&actions, 1, 2)
        }
        // Each handed-down descriptor is first copied above the targets, so no `dup2` overwrites a
        // source still to be copied; `dup2` clears close-on-exec on the target only.
        let staged = inheriting.map { fcntl($0, F_DUPFD_CLOEXEC, 64) }
        defer { staged.forEach { if $0 >= 0 { close($0) } } }
        for (i, fd) in staged.enumerated() where fd >= 0 {
            posix_spawn_file_actions_adddup2(&actions, fd, 3 + Int32(i))
        }
        if let closeFrom = GNU.addCloseFrom { _ = closeFrom(&actions, 3 + Int32(inheriting.count)) }

        let argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        let envList: [String] = environment.map { $0.map { "\($0.key)=\($0.value)" }.sorted() }
            ?? ProcessEnvironment.all().map { "\($0.key)=\($0.value)" }
        let envp: [UnsafeMutablePointer<CChar>?] = envList.map { strdup($0) } + [nil]
        defer { envp.forEach { free($0) } }

        var pid: pid_t = 0
        let rc = posix_spawn(&pid, executable, &actions, &attr, argv, envp)
        guard rc == 0 else { throw SpawnError.failed(executable: executable, errno: rc) }
        let child = ChildProcess(pid: pid, executable: executable)
        child.startReaper()
        return child
    }

    private func startReaper() {
        let context = Unmanaged.passRetained(self).toOpaque()
        var thread = pthread_t()
        let created = pthread_create(&thread, nil, { context in
            let child = Unmanaged<ChildProcess>.fromOpaque(context!).takeRetainedValue()
            var all = sigset_t()
            sigfillset(&all)
            pthread_sigmask(SIG_BLOCK, &all, nil)
            var raw: Int32 = 0
            while waitpid(child.pid, &raw, 0) < 0 {
                if errno != EINTR {
                    raw = 0x7F00  // no such child: report as exited(127)
                    break
                }
            }
            child.finish(raw)
            return nil
        }, context)
        if created == 0 {
            pthread_detach(thread)
        } else {
            Unmanaged<ChildProcess>.fromOpaque(context).release()
        }
    }

    private func finish(_ raw: Int32) {
        let low = raw & 0x7F
        let status: ExitStatus = low == 0 ? .exited((raw >> 8) & 0xFF) : .signaled(low)
        let waiters = state.withLock { s -> [CheckedContinuation<ExitStatus, Never>] in
            s.status = status
            defer { s.waiters = [] }
            return s.waiters
        }
        waiters.forEach { $0.resume(returning: status) }
    }

    /// The exit status once reaped, nil while running.
    public var exitStatus: ExitStatus? { state.withLock { $0.status } }
    /// Whether the child is still running (not reaped).
    public var isRunning: Bool { exitStatus == nil }

    /// Waits for the child to end.
    public func wait() async -> ExitStatus {
        await withCheckedContinuation { (continuation: CheckedContinuation<ExitStatus, Never>) in
            let done = state.withLock { s -> ExitStatus? in
                if let st = s.status { return st }
                s.waiters.append(continuation)
                return nil
            }
            if let done { continuation.resume(returning: done) }
        }
    }

    /// Sends `signal` to the child (and its process group if it leads one), unless already reaped.
    /// The check and the kill happen under the same lock the reaper takes to record the exit, so the
    /// pid cannot have been recycled in between.
    @discardableResult
    public func signal(_ signal: Int32, group: Bool = true) -> Bool {
        state.withLock { s in
            guard s.status == nil else { return false }
            if group && killpg(pid, signal) == 0 { return true }
            return kill(pid, signal) == 0
        }
    }

    /// Stops the child: SIGTERM to its group, then SIGKILL after `grace` seconds; waits until reaped.
    @discardableResult
    public func terminate(grace: Double, loop: EventLoop = .shared) async -> ExitStatus {
        if let st = exitStatus { return st }
        signal(SIGTERM)
        let until = deadline(after: grace)
        while isRunning && monotonicNanos() < until {
            try? await loop.sleep(seconds: 0.01)
        }
        if isRunning { signal(SIGKILL) }
        return await wait()
    }
}

/// The process environment as a dictionary.
public enum ProcessEnvironment {
    public static func all() -> [String: String] {
        var result: [String: String] = [:]
        var p = environ
        while let entry = p.pointee {
            let s = String(cString: entry)
            if let eq = s.firstIndex(of: "=") {
                result[String(s[..<eq])] = String(s[s.index(after: eq)...])
            }
            p += 1
        }
        return result
    }

    public static func get(_ name: String) -> String? {
        getenv(name).map { String(cString: $0) }
    }
}
