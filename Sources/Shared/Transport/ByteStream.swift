/// A connected byte stream a protocol client reads and writes, one task at a time: a plain
/// `Connection`, or TLS over one (`TLSConnection`). `HTTPClient` speaks HTTP/1.1 over either.
public protocol ByteStream: AnyObject {
    /// Reads whatever is available (at least one byte, or 0 at end of stream) into `buffer`, waiting
    /// until `deadline` (monotonic ns, 0 = none).
    func read(into buffer: ByteBuffer, deadline: UInt64, waitFirst: Bool) async throws -> Int
    /// Writes every unread byte of `buffer` and consumes them.
    func write(_ buffer: ByteBuffer, deadline: UInt64) async throws
    /// Writes all of `bytes`.
    func write(_ bytes: [UInt8], deadline: UInt64) async throws
    /// Closes the stream once; later calls do nothing.
    func close()
    /// Whether the peer has closed this idle stream (or sent something an idle stream must not have).
    var peerHasClosed: Bool { get }
}

extension ByteStream {
    public func read(into buffer: ByteBuffer, deadline: UInt64 = 0) async throws -> Int {
        try await read(into: buffer, deadline: deadline, waitFirst: false)
    }
    public func write(_ buffer: ByteBuffer) async throws { try await write(buffer, deadline: 0) }
    public func write(_ bytes: [UInt8]) async throws { try await write(bytes, deadline: 0) }
}

extension Connection: ByteStream {}
