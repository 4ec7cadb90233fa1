import Glibc
@testable import Shared

/// Client frames built byte by byte, independently of `WebSocketFrame.encode`, so the tests can send
/// what no correct encoder would (reserved bits and opcodes, unmasked frames, oversized control
/// frames) and so a bug in the encoder cannot hide the same bug in the reader.
enum ClientFrame {
    /// The masking key of RFC 6455 §5.7's examples.
    static let key: [UInt8] = [0x37, 0xFA, 0x21, 0x3D]

    /// One frame: FIN, RSV and a raw 4-bit opcode, the shortest length form, masked with `mask` (nil:
    /// unmasked, which a server must refuse).
    static func make(_ opcode: UInt8, _ payload: [UInt8] = [], fin: Bool = true, rsv: UInt8 = 0, mask: [UInt8]? = key) -> [UInt8] {
        var out: [UInt8] = [(fin ? 0x80 : 0) | (rsv & 7) << 4 | (opcode & 0x0F)]
        let maskBit: UInt8 = mask == nil ? 0 : 0x80
        let n = payload.count
        if n < 126 {
            out.append(maskBit | UInt8(n))
        } else if n < 65536 {
            out += [maskBit | 126, UInt8(n >> 8), UInt8(n & 0xFF)]
        } else {
            out.append(maskBit | 127)
            for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: n >> shift)) }
        }
        guard let mask else { return out + payload }
        out += mask
        out.reserveCapacity(out.count + n)
        payload.withUnsafeBufferPointer { p in
            for i in 0..<n { out.append(p[i] ^ mask[i & 3]) }
        }
        return out
    }

    static func text(_ s: String, fin: Bool = true, rsv: UInt8 = 0) -> [UInt8] { make(0x1, Array(s.utf8), fin: fin, rsv: rsv) }
    static func text(bytes: [UInt8], fin: Bool = true) -> [UInt8] { make(0x1, bytes, fin: fin) }
    static func binary(_ b: [UInt8], fin: Bool = true, rsv: UInt8 = 0) -> [UInt8] { make(0x2, b, fin: fin, rsv: rsv) }
    static func continuation(_ b: [UInt8], fin: Bool) -> [UInt8] { make(0x0, b, fin: fin) }
    static func continuation(_ s: String, fin: Bool) -> [UInt8] { make(0x0, Array(s.utf8), fin: fin) }
    static func ping(_ b: [UInt8] = [], fin: Bool = true, rsv: UInt8 = 0) -> [UInt8] { make(0x9, b, fin: fin, rsv: rsv) }
    static func pong(_ b: [UInt8] = [], fin: Bool = true) -> [UInt8] { make(0xA, b, fin: fin) }
    /// A Close frame: no payload when `code` is nil, else the code and the raw reason bytes.
    static func close(_ code: UInt16?, reason: [UInt8] = [], rsv: UInt8 = 0) -> [UInt8] {
        make(0x8, code.map { [UInt8($0 >> 8), UInt8($0 & 0xFF)] + reason } ?? [], rsv: rsv)
    }
}

/// A WebSocket client over the project's own `Connection` that does the opening handshake by hand,
/// sends bytes exactly as given (whole, in chops, with pauses) and reads the server's frames without
/// trusting the server's encoder: it checks every frame is unmasked, uses minimal lengths, and
/// reports end of stream as its own outcome.
final class WebSocketRawClient {
    let connection: Connection
    let input = ByteBuffer(capacity: 64 * 1024)

    /// A frame as it came from the server.
    struct Frame: Equatable, CustomStringConvertible {
        var fin: Bool
        var rsv: UInt8
        var opcode: UInt8
        var payload: [UInt8]

        var description: String {
            let shown = payload.count <= 40 ? "\(payload)" : "\(payload.count) bytes"
            return "frame(fin: \(fin), rsv: \(rsv), opcode: 0x\(String(opcode, radix: 16)), \(shown))"
        }
        /// The code of a Close frame (nil when it has none).
        var closeCode: UInt16? { payload.count >= 2 ? UInt16(payload[0]) << 8 | UInt16(payload[1]) : nil }
    }

    enum Failure: Error, CustomStringConvertible {
        case timedOut, handshake(String), malformed(String)
        var description: String {
            switch self {
            case .timedOut: "timed out"
            case .handshake(let s): "handshake: \(s)"
            case .malformed(let s): "malformed server frame: \(s)"
            }
        }
    }

    /// RFC 6455 §1.3's sample key and the accept value the RFC gives for it.
    static let sampleKey = "dGhlIHNhbXBsZSBub25jZQ=="
    static let sampleAccept = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

    init(connection: Connection) { self.connection = connection }

    /// Connects and completes the opening handshake (checking the 101 and its accept value).
    static func connect(port: UInt16, path: String = "/ws", loop: EventLoop = .shared) async throws -> WebSocketRawClient {
        let c = WebSocketRawClient(connection: try await Connection.connect(to: .tcp(host: "127.0.0.1", port: port), loop: loop))
        try await c.send(Array(("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                                + "Sec-WebSocket-Key: \(sampleKey)\r\nSec-WebSocket-Version: 13\r\n\r\n").utf8))
        let until = deadline(after: 5)
        while true {
            if c.input.readableCount > 0 {
                switch HTTPParser.parseResponseHead(c.input.readable, requestMethod: "GET") {
                case .complete(let head, let consumed):
                    c.input.consume(consumed)
                    guard head.status.code == 101 else { throw Failure.handshake("status \(head.status.code)") }
                    guard head.headers.containsToken("upgrade", "websocket"), head.headers.containsToken("connection", "upgrade") else {
                        throw Failure.handshake("no Upgrade / Connection headers")
                    }
                    guard head.headers["sec-websocket-accept"] == sampleAccept else {
                        throw Failure.handshake("accept \(head.headers["sec-websocket-accept"] ?? "missing")")
                    }
                    return c
                case .failure(let e): throw Failure.handshake(e.message)
                case .incomplete: break
                }
            }
            guard try await c.fill(until) else {
                throw Failure.handshake("the server closed the connection before answering\(c.lastError.isEmpty ? "" : " (\(c.lastError))")")
            }
        }
    }

    func send(_ bytes: [UInt8]) async throws { try await connection.write(bytes) }

    /// Sends `bytes` in pieces of `chop` bytes, pausing `delay` seconds between them.
    func send(_ bytes: [UInt8], chop: Int, delay: Double = 0) async throws {
        var i = 0
        while i < bytes.count {
            let end = min(i + chop, bytes.count)
            try await connection.write(Array(bytes[i..<end]))
            i = end
            if delay > 0 && i < bytes.count { try await Task.sleep(for: .seconds(delay)) }
        }
    }

    /// Reads more; false at end of stream (or a reset, which a test sees the same way).
    /// The error a read ended with, if it was not a plain end of stream (for failure messages).
    private(set) var lastError = ""
    private func fill(_ until: UInt64) async throws -> Bool {
        do {
            return try await connection.read(into: input, deadline: until) > 0
        } catch EventLoopError.timedOut {
            throw Failure.timedOut
        } catch let e as SystemError {
            lastError = "\(e)"
            return false
        }
    }

    /// The next server frame, or nil when the server closed the connection. Throws `timedOut` when
    /// nothing whole arrives within `timeout`, `malformed` for a frame a server must not send.
    func readFrame(timeout: Double = 10) async throws -> Frame? {
        let until = deadline(after: timeout)
        while true {
            if let frame = try parseFrame() { return frame }
            guard try await fill(until) else {
                if input.readableCount > 0 { throw Failure.malformed("\(input.readableCount) bytes of a frame, then end of stream") }
                return nil
            }
        }
    }

    private func parseFrame() throws -> Frame? {
        let b = input.readable
        guard b.count >= 2 else { return nil }
        if b[1] & 0x80 != 0 { throw Failure.malformed("a masked server frame (RFC 6455 §5.1)") }
        var length = Int(b[1] & 0x7F)
        var used = 2
        if length == 126 {
            guard b.count >= 4 else { return nil }
            length = Int(b[2]) << 8 | Int(b[3])
            if length < 126 { throw Failure.malformed("a 16-bit length of \(length) (not minimal)") }
            used = 4
        } else if length == 127 {
            guard b.count >= 10 else { return nil }
            var n: UInt64 = 0
            for i in 0..<8 { n = n << 8 | UInt64(b[2 + i]) }
            if n < 65536 { throw Failure.malformed("a 64-bit length of \(n) (not minimal)") }
            length = Int(n)
            used = 10
        }
        guard b.count >= used + length else { return nil }
        let frame = Frame(fin: b[0] & 0x80 != 0, rsv: b[0] >> 4 & 7, opcode: b[0] & 0x0F,
                          payload: Array(UnsafeRawBufferPointer(rebasing: b[used..<used + length])))
        input.consume(used + length)
        return frame
    }

    /// True when the server closes the connection within `timeout` and sends nothing more first.
    func closedByServer(within timeout: Double = 3) async -> Bool {
        guard input.readableCount == 0 else { return false }
        let until = deadline(after: timeout)
        do {
            return try await !fill(until)
        } catch {
            return false
        }
    }

    func close() { connection.close() }
}
