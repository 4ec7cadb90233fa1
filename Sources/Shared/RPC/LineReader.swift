import Glibc

/// Reads newline-delimited messages from a connection, with a size cap. A line over the cap is
/// skipped to its end and reported as `.tooLong`, so one bad message never ends the connection.
final class LineReader {
    enum Line {
        case line([UInt8])
        case tooLong
        case end
    }

    let connection: Connection
    let buffer = ByteBuffer(capacity: 64 * 1024)
    /// Raised once a connection's handshake (short lines) is over.
    var maxBytes: Int
    private var scanned = 0
    private var discarding = false

    init(connection: Connection, maxBytes: Int) {
        self.connection = connection
        self.maxBytes = maxBytes
    }

    /// The next line; `deadline` (monotonic ns, 0 = none) bounds each wait for more bytes.
    func next(deadline: UInt64 = 0) async throws -> Line {
        while true {
            let readable = buffer.readable
            if readable.count > scanned,
               let found = memchr(readable.baseAddress! + scanned, 10, readable.count - scanned) {
                let end = readable.baseAddress!.distance(to: UnsafeRawPointer(found))
                let wasDiscarding = discarding || end > maxBytes
                let line = wasDiscarding ? [] : Array(UnsafeRawBufferPointer(rebasing: readable[0..<end]))
                buffer.consume(end + 1)
                scanned = 0
                discarding = false
                if wasDiscarding { return .tooLong }
                if line.isEmpty || (line.count == 1 && line[0] == 13) { continue }
                return .line(line)
            }
            scanned = readable.count
            if scanned > maxBytes {
                discarding = true
                buffer.clear()
                scanned = 0
            }
            let n = try await connection.read(into: buffer, deadline: deadline)
            if n == 0 { return .end }
        }
    }
}
