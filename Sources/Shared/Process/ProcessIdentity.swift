import Glibc

/// A process as /proc knows it: pid plus its start time (clock ticks since boot, /proc/<pid>/stat
/// field 22). The pair identifies one process for its whole life; a recycled pid has another start
/// time. Used to adopt runners after a restart and to never signal a stranger.
public struct ProcessIdentity: Codable, Sendable, Equatable {
    public let pid: Int32
    public let startTime: UInt64

    public init(pid: Int32, startTime: UInt64) {
        self.pid = pid
        self.startTime = startTime
    }

    /// The identity of the live process `pid`, or nil if there is none (a zombie counts as gone).
    public static func of(_ pid: Int32) -> ProcessIdentity? {
        guard let stat = readFile("/proc/\(pid)/stat", maxBytes: 4096), let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // fields[0] is the state (field 3); the start time is field 22.
        guard fields.count > 19, fields[0] != "Z", fields[0] != "X", let start = UInt64(fields[19]) else { return nil }
        return ProcessIdentity(pid: pid, startTime: start)
    }

    /// Whether this exact process is still alive.
    public var isAlive: Bool { ProcessIdentity.of(pid) == self }

    /// Resident memory in bytes (VmRSS), if the process is alive.
    public static func residentBytes(_ pid: Int32) -> Int? {
        guard let status = readFile("/proc/\(pid)/status", maxBytes: 8192),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
              let kb = Int(line.split(separator: " ").dropFirst().first ?? "") else { return nil }
        return kb * 1024
    }

    /// Signals the process (and its group) only if it is still this exact process.
    @discardableResult
    public func signal(_ sig: Int32) -> Bool {
        guard isAlive else { return false }
        if killpg(pid, sig) == 0 { return true }
        return kill(pid, sig) == 0
    }

    /// SIGTERM, then SIGKILL after `grace` seconds; returns once the process is gone.
    public func terminate(grace: Double, loop: EventLoop = .shared) async {
        guard signal(SIGTERM) else { return }
        let until = deadline(after: grace)
        while isAlive && monotonicNanos() < until { try? await loop.sleep(seconds: 0.02) }
        if isAlive { signal(SIGKILL) }
        let hard = deadline(after: 5)
        while isAlive && monotonicNanos() < hard { try? await loop.sleep(seconds: 0.02) }
    }
}
