import Glibc
import Shared
import Synchronization

/// A runner's log: the child writes its stdout and stderr straight into
/// `<state>/logs/runners/<model>.log` (so it keeps logging after an adoption, when no pipe to the
/// old manager would exist); the manager tails that file into a ring buffer of the last lines, uses
/// its growth as load progress, and rotates it by copy-and-truncate (the child's O_APPEND descriptor
/// stays valid).
final class RunnerLog: Sendable {
    let path: String
    let capacity: Int
    let maxBytes: Int
    let keep: Int

    private struct State {
        var lines: [String] = []
        var offset = 0
        var partial: [UInt8] = []
        /// Total bytes seen: grows while the runner loads (progress).
        var bytesSeen = 0
    }

    /// Used by the runner manager's actor and a process's readiness wait, one at a time in practice;
    /// the lock makes that a guarantee rather than a promise.
    private let state: Mutex<State>
    /// A rotation is running on the blocking pool (the poll goes on; it sees the truncation).
    private let rotating = Atomic<Bool>(false)

    init(path: String, capacity: Int = 500, maxBytes: Int = 10 << 20, keep: Int = 5, startAtEnd: Bool = false) {
        self.path = path
        self.capacity = capacity
        self.maxBytes = maxBytes
        self.keep = keep
        var initial = State()
        if startAtEnd, let stamp = FileStamp.of(path) { initial.offset = stamp.size }
        state = Mutex(initial)
    }

    /// Total bytes seen: grows while the runner loads (progress).
    var bytesSeen: Int { state.withLock { $0.bytesSeen } }

    /// Reads what was appended since the last call. Returns the new complete lines.
    @discardableResult
    func poll() -> [String] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return [] }
        defer { close(fd) }
        var st = stat()
        fstat(fd, &st)
        let size = Int(st.st_size)
        let (fresh, oversized) = state.withLock { s -> ([String], Bool) in
            if size < s.offset { s.offset = 0 }  // truncated (rotated)
            guard size > s.offset else { return ([], false) }
            var chunk = [UInt8](repeating: 0, count: min(size - s.offset, 1 << 20))
            let n = chunk.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, off_t(s.offset)) }
            guard n > 0 else { return ([], false) }
            s.offset += n
            s.bytesSeen += n
            var fresh: [String] = []
            s.partial += chunk[0..<n]
            while let nl = s.partial.firstIndex(of: 10) {
                var line = Array(s.partial[0..<nl])
                if line.last == 13 { line.removeLast() }
                fresh.append(String(decoding: line, as: UTF8.self))
                s.partial.removeFirst(nl + 1)
            }
            if s.partial.count > 64 * 1024 {  // a runaway line without newline
                fresh.append(String(decoding: s.partial, as: UTF8.self))
                s.partial.removeAll()
            }
            s.lines += fresh
            if s.lines.count > capacity { s.lines.removeFirst(s.lines.count - capacity) }
            return (fresh, size > maxBytes)
        }
        if oversized { rotate() }
        return fresh
    }

    /// The last `count` lines.
    func tail(_ count: Int) -> [String] { state.withLock { Array($0.lines.suffix(count)) } }

    /// Copy-and-truncate rotation: `x.log.N` … `x.log.1` shift, the current content is copied to
    /// `x.log.1` (written and fsynced atomically), then the file is truncated in place. It runs on the
    /// blocking pool; the next poll sees the file shrink and reads it from the start.
    private func rotate() {
        guard !rotating.exchange(true, ordering: .acquiringAndReleasing) else { return }
        let (path, keep, maxBytes) = (self.path, self.keep, self.maxBytes)
        BlockingPool.shared.queue(for: path).submit { [self] in
            unlink("\(path).\(keep)")
            for i in stride(from: keep - 1, through: 1, by: -1) { rename("\(path).\(i)", "\(path).\(i + 1)") }
            if let bytes = readFileBytes(path, maxBytes: maxBytes * 2) {
                try? AtomicFile.write(bytes, to: "\(path).1")
            }
            truncate(path, 0)
            rotating.store(false, ordering: .releasing)
        }
    }
}
