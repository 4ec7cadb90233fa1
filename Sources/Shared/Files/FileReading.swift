import Glibc

/// Reads a whole (small) file as UTF-8, or its last `maxBytes` bytes; nil if it cannot be read.
public func readFile(_ path: String, maxBytes: Int = 64 << 20) -> String? {
    guard let bytes = readFileBytes(path, maxBytes: maxBytes) else { return nil }
    return String(decoding: bytes, as: UTF8.self)
}

/// Reads a file's bytes, or its last `maxBytes` bytes; nil if it cannot be read.
public func readFileBytes(_ path: String, maxBytes: Int = 64 << 20) -> [UInt8]? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var st = stat()
    guard fstat(fd, &st) == 0 else { return nil }
    let size = Int(st.st_size)
    if size > maxBytes { lseek(fd, off_t(size - maxBytes), SEEK_SET) }
    var result: [UInt8] = []
    result.reserveCapacity(min(size, maxBytes))
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, 65536) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { break }
        result.append(contentsOf: chunk[0..<n])
    }
    return result
}
