import Glibc
import Shared
import Synchronization

/// One file from the hub onto disk, safely:
/// - the free space is checked before the first byte (the file, less what a partial download already
///   has, plus `limits.download_reserve_bytes` kept free);
/// - bytes go to `<file>.partial` beside the destination, with a `<file>.partial.json` saying what
///   they are (the SHA-256 and size the hub reported), so a download that stopped — a dropped
///   connection, a cancel, a restart of the service, `kill -9` — resumes with a `Range` request;
/// - every byte is hashed as it is written, and the file is renamed into place only when the SHA-256
///   matches the LFS oid; a mismatch deletes the partial file and says so.
/// Socket reads run on the event loop; writes, fsync and hashing on the blocking pool, one piece
/// behind the reads.
final class FileDownload: Sendable {
    enum Outcome: Sendable, Equatable { case downloaded, alreadyPresent }

    let hub: HubClient
    let repo: String
    let commit: String
    let file: HubFile
    /// Where the file goes.
    let destination: String
    /// Bytes to keep free beyond the file.
    let reserveBytes: Int
    let loop: EventLoop
    private let counters = Mutex<(completed: Int, total: Int)>((0, 0))

    /// Attempts per download (a dropped connection resumes where it stopped).
    static let attempts = 6
    /// Bytes gathered before each write.
    static let pieceBytes = 1 << 20

    init(hub: HubClient, repo: String, commit: String, file: HubFile, destination: String, reserveBytes: Int, loop: EventLoop) {
        self.hub = hub
        self.repo = repo
        self.commit = commit
        self.file = file
        self.destination = destination
        self.reserveBytes = reserveBytes
        self.loop = loop
        counters.withLock { $0 = (0, file.size) }
    }

    var partialPath: String { destination + ".partial" }
    var markerPath: String { destination + ".partial.json" }
    var progress: (completed: Int, total: Int) { counters.withLock { $0 } }

    /// Downloads (or finds) the file. Cancellation stops it with the partial file kept.
    func run() async throws(HubError) -> Outcome {
        let expected = file.sha256
        if let existing = FileStamp.of(destination), existing.size == file.size, file.size > 0 {
            counters.withLock { $0 = (file.size, file.size) }
            return .alreadyPresent
        }
        var target = try await hub.target(repo: repo, commit: commit, path: file.path)
        let sha = expected ?? target.sha256
        guard let sha else {
            throw HubError(failure: .unreachable, message: "\(repo)/\(file.path): the hub reported no SHA-256 for it, so it cannot be verified (is this a Git LFS file?)")
        }
        let size = file.size > 0 ? file.size : target.size
        counters.withLock { $0 = (0, size) }
        let (writer, start) = try await prepare(sha: sha, size: size)
        var offset = start
        counters.withLock { $0.completed = offset }
        var attempt = 0
        while offset < size {
            attempt += 1
            if attempt > 1 {
                if Task.isCancelled { throw HubError(failure: .other, message: "cancelled") }
                try? await loop.sleep(seconds: min(8, 0.5 * Double(1 << (attempt - 2))))
                target = try await hub.target(repo: repo, commit: commit, path: file.path)
            }
            do {
                try await transfer(target, offset: &offset, size: size, writer: writer)
            } catch let error where error.failure == .unreachable && attempt < Self.attempts && !Task.isCancelled {
                continue
            }
        }
        let digest: String
        do { digest = SHA256.hex(try await writer.digest()) } catch { throw Self.failure(error) }
        guard digest == sha else {
            await writer.discard()
            let marker = markerPath
            await BlockingPool.shared.run { _ = unlink(marker) }
            throw HubError(failure: .checksumMismatch, message: "\(repo)/\(file.path): the downloaded bytes have SHA-256 \(digest), not \(sha) as the hub reports; the file was deleted, pull again")
        }
        do { try await writer.commit(to: destination) } catch {
            throw HubError(failure: .other, message: "cannot move the download into place at \(destination): \(error)")
        }
        let marker = markerPath
        await BlockingPool.shared.run { _ = unlink(marker) }
        counters.withLock { $0.completed = size }
        return .downloaded
    }

    /// Checks the space, opens the partial file and, when it holds the same file's first bytes, hashes
    /// them to resume after them (a partial file of another version is started over).
    private func prepare(sha: String, size: Int) async throws(HubError) -> (StagedFile, Int) {
        let (partial, marker, destination, reserve) = (partialPath, markerPath, self.destination, reserveBytes)
        let label = "\(repo)/\(file.path)"
        let markerBody = JSONWriter.bytes(.object(JSONObject([("sha256", .string(sha)), ("size", .int(size)), ("repo", .string(repo)),
                                                              ("commit", .string(commit)), ("path", .string(file.path))])), pretty: false)
        let result = await BlockingPool.shared.run { () -> Result<(StagedFile, Int), HubError> in
            let dir = String(destination[..<(destination.lastIndex(of: "/") ?? destination.startIndex)])
            do { try makeDirectories(dir) } catch {
                return .failure(HubError(failure: .other, message: "cannot create \(dir): \(error)"))
            }
            let previous = readFileBytes(marker, maxBytes: 4096).flatMap { try? JSONParser.parse($0).0 }
            var have = FileStamp.of(partial)?.size ?? 0
            if previous?["sha256"]?.stringValue != sha || have > size { have = 0 }
            var vfs = statvfs()
            if statvfs(dir, &vfs) == 0 {
                let free = Int(vfs.f_bavail) * Int(vfs.f_frsize)
                let needed = size - have
                if needed + reserve > free {
                    return .failure(HubError(failure: .insufficientSpace, message:
                        "not enough free space in \(dir) for \(label): it needs \(ModelMemory.gigabytes(needed)) more and \(ModelMemory.gigabytes(reserve)) kept free (limits.download_reserve_bytes), and \(ModelMemory.gigabytes(free)) are free"))
                }
            }
            let fd = open(partial, O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
            guard fd >= 0 else { return .failure(HubError(failure: .other, message: "cannot open \(partial): \(SystemError("open"))")) }
            let hasher = Hasher256()
            if have > 0 {
                // The bytes already there are hashed again: a hash's state cannot be saved.
                let rfd = open(partial, O_RDONLY | O_CLOEXEC)
                var buffer = [UInt8](repeating: 0, count: 4 << 20)
                var read = 0
                while rfd >= 0 && read < have {
                    let n = buffer.withUnsafeMutableBytes { Glibc.pread(rfd, $0.baseAddress, min($0.count, have - read), off_t(read)) }
                    if n <= 0 { break }
                    buffer.withUnsafeBytes { hasher.update(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
                    read += n
                }
                if rfd >= 0 { Glibc.close(rfd) }
                have = read
            }
            ftruncate(fd, off_t(have))
            if have == 0 { _ = try? AtomicFile.write(markerBody, to: marker) }
            return .success((StagedFile(fd: fd, path: partial, hasher: hasher), have))
        }
        return try result.get()
    }

    /// One GET from `offset`, which it advances past every byte written and hashed — also when it
    /// fails, so the next attempt resumes exactly there. A server that ignores the range (200)
    /// restarts the file; 416 at the end means it is complete.
    private func transfer(_ target: HubTarget, offset: inout Int, size: Int, writer: StagedFile) async throws(HubError) {
        let start = offset
        let response = try await hub.get(target, from: start)
        switch response.status.code {
        case 206: break
        case 200:
            if start > 0 {
                // The Range was ignored: what is on disk is dropped and the file starts over.
                do { try await writer.restart() } catch { throw Self.failure(error) }
                offset = 0
                counters.withLock { $0.completed = 0 }
            }
        case 416 where start >= size:
            return
        default:
            throw HubError(failure: .unreachable, message: "\(target.url.host) answered \(response.status.code) for \(repo)/\(file.path)")
        }
        var piece: [UInt8] = []
        piece.reserveCapacity(Self.pieceBytes)
        while offset + piece.count < size {
            let chunk: [UInt8]?
            do {
                chunk = try await response.read(idleTimeout: 60)
            } catch is CancellationError {
                try? await writer.write(piece, at: offset)
                offset += piece.count
                try? await writer.flush()
                throw HubError(failure: .other, message: "cancelled")
            } catch {
                try await write(piece, at: offset, to: writer)
                offset += piece.count
                counters.withLock { $0.completed = offset }
                throw HubError(failure: .unreachable, message: "the download of \(repo)/\(file.path) broke off at \(offset) of \(size) bytes: \(error)")
            }
            guard let chunk else { break }
            piece.append(contentsOf: chunk.prefix(size - offset - piece.count))
            if piece.count >= Self.pieceBytes {
                try await write(piece, at: offset, to: writer)
                offset += piece.count
                piece.removeAll(keepingCapacity: true)
                counters.withLock { $0.completed = offset }
            }
        }
        try await write(piece, at: offset, to: writer)
        offset += piece.count
        counters.withLock { $0.completed = offset }
        if offset < size {
            throw HubError(failure: .unreachable, message: "the download of \(repo)/\(file.path) ended at \(offset) of \(size) bytes")
        }
    }

    private func write(_ piece: [UInt8], at offset: Int, to writer: StagedFile) async throws(HubError) {
        do { try await writer.write(piece, at: offset) } catch { throw Self.failure(error) }
    }

    static func failure(_ error: SystemError) -> HubError {
        HubError(failure: error.errno == ENOSPC ? .insufficientSpace : .other, message: "writing the download failed: \(error)")
    }
}
