import Glibc
import Synchronization

/// A large file written beside its destination and moved into place only when complete: what a
/// download and an uploaded blob have in common. Every byte is SHA-256 hashed as it is written, so
/// the caller compares the digest before `commit` renames the file over its destination (fsyncing
/// the file and the folder). Writes run on the blocking pool one piece behind the caller: `write`
/// returns once the previous piece is on disk and this one has been handed over.
///
/// The object owns its descriptor: it is closed when the object ends, on every path (a write in
/// flight holds the object, so the descriptor outlives it), or by `commit`/`discard`. The staging file itself stays until `commit` or `discard`: a download
/// keeps it to resume; an upload discards it.
///
/// @unchecked Sendable: `pending` and `hasher` are used by one task at a time, each write awaited
/// (through the next call) before the next is submitted.
public final class StagedFile: @unchecked Sendable {
    /// The staging file's path.
    public let path: String
    private let fd: Int32
    private var hasher: Hasher256
    private var pending: Task<Result<Void, SystemError>, Never>?
    private let closed = Atomic<Bool>(false)

    /// Adopts an open descriptor of `path`; `hasher` has already consumed the bytes the file holds.
    public init(fd: Int32, path: String, hasher: Hasher256 = Hasher256()) {
        self.fd = fd
        self.path = path
        self.hasher = hasher
    }

    deinit { closeDescriptor() }

    /// Creates `path` (which must not exist) on the blocking pool.
    public static func create(_ path: String) async throws(SystemError) -> StagedFile {
        let fd = await BlockingPool.shared.run { open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644) }
        guard fd >= 0 else { throw SystemError("open \(path)") }
        return StagedFile(fd: fd, path: path)
    }

    /// Writes and hashes `bytes` at `offset`, after the previous piece.
    public func write(_ bytes: [UInt8], at offset: Int) async throws(SystemError) {
        try await flush()
        guard !bytes.isEmpty else { return }
        let hasher = self.hasher
        pending = Task { [self] in
            await BlockingPool.shared.run { () -> Result<Void, SystemError> in
                let fd = self.fd
                var done = 0
                while done < bytes.count {
                    let n = bytes.withUnsafeBytes { Glibc.pwrite(fd, $0.baseAddress! + done, $0.count - done, off_t(offset + done)) }
                    if n < 0 {
                        if errno == EINTR { continue }
                        return .failure(SystemError("pwrite"))
                    }
                    done += n
                }
                hasher.update(bytes)
                return .success(())
            }
        }
    }

    /// Waits for the piece being written.
    public func flush() async throws(SystemError) {
        if let pending {
            self.pending = nil
            try await pending.value.get()
        }
    }

    /// Empties the file and its hash, to write it again from the start.
    public func restart() async throws(SystemError) {
        try await flush()
        let fd = self.fd
        hasher = Hasher256()
        guard await BlockingPool.shared.run({ ftruncate(fd, 0) }) == 0 else { throw SystemError("ftruncate") }
    }

    /// The SHA-256 of every byte written (the hasher is spent: call once, before `commit`).
    public func digest() async throws(SystemError) -> [UInt8] {
        try await flush()
        let hasher = self.hasher
        return await BlockingPool.shared.run { hasher.finish() }
    }

    /// fsyncs the file, renames it to `destination` and fsyncs the folder.
    public func commit(to destination: String) async throws(SystemError) {
        try await flush()
        let (fd, path) = (self.fd, self.path)
        let result = await BlockingPool.shared.run { () -> Result<Void, SystemError> in
            guard fsync(fd) == 0 else { return .failure(SystemError("fsync \(path)")) }
            guard rename(path, destination) == 0 else { return .failure(SystemError("rename \(path) to \(destination)")) }
            let dir = String(destination[..<(destination.lastIndex(of: "/") ?? destination.startIndex)])
            let dfd = open(dir.isEmpty ? "." : dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            if dfd >= 0 { fsync(dfd); Glibc.close(dfd) }
            return .success(())
        }
        try result.get()
        closeDescriptor()
    }

    /// Closes and deletes the staging file.
    public func discard() async {
        try? await flush()
        closeDescriptor()
        let path = self.path
        await BlockingPool.shared.run { _ = unlink(path) }
    }

    private func closeDescriptor() {
        if !closed.exchange(true, ordering: .relaxed) { Glibc.close(fd) }
    }
}
