import Glibc
import Shared

/// CPU% and resident memory of processes from /proc: CPU% is the change of user + system clock ticks
/// (/proc/<pid>/stat fields 14 and 15) over the wall time between two samples.
struct ProcessSampler {
    private var last: [Int32: (ticks: Int, at: Double)] = [:]
    let ticksPerSecond = Double(sysconf(Int32(_SC_CLK_TCK)))

    static func ticks(_ pid: Int32) -> Int? {
        guard let stat = readFile("/proc/\(pid)/stat", maxBytes: 4096), let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 12, let user = Int(fields[11]), let system = Int(fields[12]) else { return nil }
        return user + system
    }

    /// (cpu percent since the previous sample, resident bytes); cpu is nil on the first sample.
    mutating func sample(_ pid: Int32, now: Double) -> (cpu: Double?, rss: Int?) {
        let rss = ProcessIdentity.residentBytes(pid)
        guard let ticks = Self.ticks(pid) else {
            last[pid] = nil
            return (nil, rss)
        }
        defer { last[pid] = (ticks, now) }
        guard let previous = last[pid], now > previous.at else { return (nil, rss) }
        return (Double(ticks - previous.ticks) / ticksPerSecond / (now - previous.at) * 100, rss)
    }
}
