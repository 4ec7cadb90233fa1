import Glibc

/// Crash-safe file replacement: write a temporary file in the same directory, fsync it, rename it
/// over the target, fsync the directory. A reader — or a process restarted after `kill -9` at any
/// moment — sees either the old content or the new, never a mix.
public enum AtomicFile {
    /// The prefix of temporary files, so stale ones can be recognized and removed.
    public static func temporaryPrefix(for name: String) -> String { ".\(name).tmp." }

    public static func write(_ bytes: [UInt8], to path: String, mode: mode_t = 0o644) throws(SystemError) {
        let dir = path.lastIndex(of: "/").map { String(path[..<$0]) } ?? "."
        let name = path.lastIndex(of: "/").map { String(path[path.index(after: $0)...]) } ?? path
        let temp = "\(dir)/\(temporaryPrefix(for: name))\(getpid())"
        let fd = open(temp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        guard fd >= 0 else { throw SystemError("open \(temp)") }
        var written = 0
        while written < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + written, $0.count - written) }
            if n < 0 {
                if errno == EINTR { continue }
                let e = SystemError("write \(temp)")
                close(fd)
                unlink(temp)
                throw e
            }
            written += n
        }
        guard fsync(fd) == 0 else {
            let e = SystemError("fsync \(temp)")
            close(fd)
            unlink(temp)
            throw e
        }
        close(fd)
        guard rename(temp, path) == 0 else {
            let e = SystemError("rename \(temp)")
            unlink(temp)
            throw e
        }
        let dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 {
            fsync(dfd)
            close(dfd)
        }
    }

    /// Removes temporary files left in `dir` by a writer that died mid-write.
    public static func removeStaleTemporaries(in dir: String, for name: String) {
        let prefix = temporaryPrefix(for: name)
        for entry in listDirectory(dir) ?? [] where entry.hasPrefix(prefix) { unlink("\(dir)/\(entry)") }
    }
}

/// A file's identity and version for change detection (hand edits).
public struct FileStamp: Sendable, Equatable {
    public let inode: UInt64
    public let size: Int
    public let modifiedNanos: Int

    public init(inode: UInt64, size: Int, modifiedNanos: Int) {
        self.inode = inode
        self.size = size
        self.modifiedNanos = modifiedNanos
    }

    /// The stamp of the file at `path`, or nil when there is none.
    public static func of(_ path: String) -> FileStamp? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return FileStamp(inode: UInt64(st.st_ino), size: Int(st.st_size),
                         modifiedNanos: Int(st.st_mtim.tv_sec) * 1_000_000_000 + Int(st.st_mtim.tv_nsec))
    }
}
