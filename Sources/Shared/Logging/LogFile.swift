import Glibc
import Synchronization

/// An append-only log file rotated by size: `name.log` → `name.log.1` → … → `name.log.<keep>`
/// (the oldest is removed). Appends are single `write(2)` calls on an `O_APPEND` descriptor, so lines
/// from a crashing process are never interleaved mid-line.
public final class LogFile: Sendable {
    /// The current file.
    public let path: String
    /// Size that triggers rotation (default 10 MiB).
    public let maxBytes: Int
    /// Rotated files kept (default 5).
    public let keep: Int
    private let state: Mutex<(fd: Int32, size: Int)>

    public init(path: String, maxBytes: Int = 10 << 20, keep: Int = 5) {
        self.path = path
        self.maxBytes = maxBytes
        self.keep = keep
        let fd = LogFile.open(path)
        var st = stat()
        let size = fd >= 0 && fstat(fd, &st) == 0 ? Int(st.st_size) : 0
        state = Mutex((fd, size))
    }

    deinit {
        state.withLock { if $0.fd >= 0 { close($0.fd) } }
    }

    static func open(_ path: String) -> Int32 {
        Glibc.open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
    }

    /// Appends bytes (normally one line), rotating first if the file would exceed `maxBytes`.
    public func append(_ bytes: [UInt8]) {
        state.withLock { s in
            if s.size + bytes.count > maxBytes && s.size > 0 {
                rotate(&s)
            }
            guard s.fd >= 0 else { return }
            let n = bytes.withUnsafeBytes { Glibc.write(s.fd, $0.baseAddress, $0.count) }
            if n > 0 { s.size += n }
        }
    }

    private func rotate(_ s: inout (fd: Int32, size: Int)) {
        if s.fd >= 0 { close(s.fd) }
        unlink("\(path).\(keep)")
        if keep > 0 {
            for i in stride(from: keep - 1, through: 1, by: -1) {
                rename("\(path).\(i)", "\(path).\(i + 1)")
            }
            rename(path, "\(path).1")
        } else {
            unlink(path)
        }
        s.fd = LogFile.open(path)
        s.size = 0
    }

    /// The last `count` lines of the current file (and the previous one if needed).
    public static func tail(_ path: String, lines count: Int) -> [String] {
        var collected: [String] = []
        for file in [path, "\(path).1"] where collected.count < count {
            guard let text = readFile(file, maxBytes: 256 * 1024) else { continue }
            let lines = text.split(separator: "\n", omittingEmptySubsequences: true).map(String.init)
            collected = Array(lines.suffix(count - collected.count)) + collected
        }
        return collected
    }
}
