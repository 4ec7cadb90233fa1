/// The receiving half of RFC 6455 as a pure state machine: fed whatever bytes have arrived (one at a
/// time, or many frames at once), it returns whole messages and control frames, or the protocol
/// error that fails the connection with its close code. No I/O, so every rule is tested from raw
/// bytes.
///
/// Rules enforced (RFC 6455 §5): the reserved bits are zero (no extension is negotiated); opcodes
/// 0x3–0x7 and 0xB–0xF are reserved; client frames are masked (§5.1, when `requireMask`); control
/// frames are not fragmented and carry at most 125 bytes (§5.5); a continuation frame continues a
/// message and a new data frame does not interrupt one (§5.4), though control frames may come between
/// its fragments; the 64-bit length has its top bit clear (§5.2); a text message is valid UTF-8,
/// checked as its bytes arrive so it fails at the first bad byte (§8.1: 1007); a Close frame's payload
/// is empty or a valid code and a UTF-8 reason (§5.5.1, §7.4). A message longer than
/// `maxMessageBytes` fails with 1009 as soon as a frame header announces it, before its payload is
/// read.
public struct WebSocketReader: Sendable {
    /// What the reader produced.
    public enum Event: Sendable, Equatable {
        /// A whole text (`.text`, valid UTF-8) or binary message.
        case message(WebSocketOpcode, [UInt8])
        case ping([UInt8])
        case pong([UInt8])
        /// The peer's Close: its code (nil when the frame had none) and reason.
        case close(code: UInt16?, reason: String)
    }

    public enum Result: Sendable, Equatable {
        /// An event, after `consumed` bytes of the input.
        case event(Event, consumed: Int)
        /// All of the input that could be used was used (`consumed` bytes); more is needed.
        case needMore(consumed: Int)
        /// The connection must fail with this error; the reader is not to be fed again.
        case failure(WebSocketProtocolError)
    }

    private struct Frame: Sendable {
        var opcode: WebSocketOpcode
        var fin: Bool
        var mask: (UInt8, UInt8, UInt8, UInt8)?
        var remaining: Int
        var maskOffset = 0
    }

    public let maxMessageBytes: Int
    public let requireMask: Bool
    private var frame: Frame?
    /// The data opcode of the message being assembled (nil between messages).
    private var messageOpcode: WebSocketOpcode?
    private var message: [UInt8] = []
    private var utf8 = UTF8Validator()
    private var control: [UInt8] = []

    public init(maxMessageBytes: Int = 16 << 20, requireMask: Bool = true) {
        self.maxMessageBytes = maxMessageBytes
        self.requireMask = requireMask
    }

    /// Whether a fragmented message is in progress (between its first frame and its last).
    public var isInsideMessage: Bool { messageOpcode != nil }

    /// Reads from `input` until an event is complete or the input runs out.
    public mutating func next(_ input: UnsafeRawBufferPointer) -> Result {
        var offset = 0
        while true {
            if frame == nil {
                switch header(input, at: offset) {
                case .incomplete: return .needMore(consumed: offset)
                case .failure(let error): return .failure(error)
                case .frame(let f, let length):
                    offset += length
                    if let error = begin(f) { return .failure(error) }
                    frame = f
                }
            }
            var f = frame!
            let take = min(f.remaining, input.count - offset)
            if take > 0 {
                let chunk = UnsafeRawBufferPointer(rebasing: input[offset..<offset + take])
                if f.opcode.isControl {
                    Self.unmask(chunk, f.mask, from: f.maskOffset, into: &control)
                } else {
                    let start = message.count
                    Self.unmask(chunk, f.mask, from: f.maskOffset, into: &message)
                    if messageOpcode == .text {
                        let valid = message.withUnsafeBytes { utf8.feed(UnsafeRawBufferPointer(rebasing: $0[start...])) }
                        if !valid { return .failure(WebSocketProtocolError(WebSocketCloseCode.invalidPayload, "a text message is not valid UTF-8")) }
                    }
                }
                f.remaining -= take
                f.maskOffset += take
                offset += take
            }
            guard f.remaining == 0 else {
                frame = f
                return .needMore(consumed: offset)
            }
            frame = nil
            if f.opcode.isControl {
                switch controlEvent(f.opcode) {
                case .success(let event): return .event(event, consumed: offset)
                case .failure(let error): return .failure(error)
                }
            }
            guard f.fin else { continue }
            let opcode = messageOpcode!
            if opcode == .text && !utf8.isComplete {
                return .failure(WebSocketProtocolError(WebSocketCloseCode.invalidPayload, "a text message ends inside a UTF-8 sequence"))
            }
            messageOpcode = nil
            utf8 = UTF8Validator()
            defer { message = [] }
            return .event(.message(opcode, message), consumed: offset)
        }
    }

    private enum Header {
        case incomplete
        case failure(WebSocketProtocolError)
        case frame(Frame, length: Int)
    }

    /// Parses a frame header at `offset` (2 to 14 bytes) and checks what can be checked from it alone.
    private func header(_ input: UnsafeRawBufferPointer, at offset: Int) -> Header {
        let available = input.count - offset
        guard available >= 2 else { return .incomplete }
        let b0 = input[offset], b1 = input[offset + 1]
        func fail(_ reason: String) -> Header { .failure(WebSocketProtocolError(WebSocketCloseCode.protocolError, reason)) }
        if b0 & 0x70 != 0 { return fail("reserved bits set in a frame header (no extension was negotiated)") }
        guard let opcode = WebSocketOpcode(rawValue: b0 & 0x0F) else { return fail("reserved opcode 0x\(String(b0 & 0x0F, radix: 16))") }
        let fin = b0 & 0x80 != 0
        let masked = b1 & 0x80 != 0
        if requireMask && !masked { return fail("a client frame is not masked") }
        var length = Int(b1 & 0x7F)
        var used = 2
        if opcode.isControl {
            if !fin { return fail("a fragmented control frame") }
            if length > 125 { return fail("a control frame with more than 125 bytes of payload") }
        }
        if length == 126 {
            guard available >= 4 else { return .incomplete }
            length = Int(input[offset + 2]) << 8 | Int(input[offset + 3])
            used = 4
        } else if length == 127 {
            guard available >= 10 else { return .incomplete }
            var n: UInt64 = 0
            for i in 0..<8 { n = n << 8 | UInt64(input[offset + 2 + i]) }
            if n & (1 << 63) != 0 { return fail("a frame length with its most significant bit set") }
            length = n > UInt64(Int.max / 2) ? Int.max / 2 : Int(n)
            used = 10
        }
        var mask: (UInt8, UInt8, UInt8, UInt8)?
        if masked {
            guard available >= used + 4 else { return .incomplete }
            mask = (input[offset + used], input[offset + used + 1], input[offset + used + 2], input[offset + used + 3])
            used += 4
        }
        return .frame(Frame(opcode: opcode, fin: fin, mask: mask, remaining: length), length: used)
    }

    /// The rules that depend on what came before: continuation, interleaving, the size limit.
    private mutating func begin(_ f: Frame) -> WebSocketProtocolError? {
        if f.opcode.isControl {
            control = []
            return nil
        }
        if f.opcode == .continuation {
            guard messageOpcode != nil else {
                return WebSocketProtocolError(WebSocketCloseCode.protocolError, "a continuation frame with no message to continue")
            }
        } else {
            guard messageOpcode == nil else {
                return WebSocketProtocolError(WebSocketCloseCode.protocolError, "a new data frame inside a fragmented message")
            }
            messageOpcode = f.opcode
            message = []
            utf8 = UTF8Validator()
        }
        if f.remaining > maxMessageBytes - message.count {
            return WebSocketProtocolError(WebSocketCloseCode.messageTooBig, "a message is larger than the limit of \(maxMessageBytes) bytes")
        }
        message.reserveCapacity(message.count + f.remaining)
        return nil
    }

    private func controlEvent(_ opcode: WebSocketOpcode) -> Swift.Result<Event, WebSocketProtocolError> {
        switch opcode {
        case .ping: return .success(.ping(control))
        case .pong: return .success(.pong(control))
        default:
            if control.isEmpty { return .success(.close(code: nil, reason: "")) }
            guard control.count >= 2 else {
                return .failure(WebSocketProtocolError(WebSocketCloseCode.protocolError, "a close frame with a 1-byte payload"))
            }
            let code = UInt16(control[0]) << 8 | UInt16(control[1])
            guard WebSocketCloseCode.isValidOnWire(code) else {
                return .failure(WebSocketProtocolError(WebSocketCloseCode.protocolError, "a close frame with the invalid code \(code)"))
            }
            let reason = Array(control[2...])
            guard UTF8Validator.isValid(reason) else {
                return .failure(WebSocketProtocolError(WebSocketCloseCode.invalidPayload, "a close frame whose reason is not valid UTF-8"))
            }
            return .success(.close(code: code, reason: String(decoding: reason, as: UTF8.self)))
        }
    }

    /// Appends `chunk` to `out`, unmasked with the key at `offset` into the frame's payload (§5.3).
    private static func unmask(_ chunk: UnsafeRawBufferPointer, _ mask: (UInt8, UInt8, UInt8, UInt8)?, from offset: Int, into out: inout [UInt8]) {
        guard let mask else {
            out.append(contentsOf: chunk)
            return
        }
        // The key as it stands at `offset`, then applied eight bytes at a time (the phase repeats
        // every four bytes, so it stays aligned), the tail byte by byte.
        let all = [mask.0, mask.1, mask.2, mask.3]
        let key = (0..<4).map { all[(offset + $0) & 3] }
        let k32 = UInt32(key[0]) | UInt32(key[1]) << 8 | UInt32(key[2]) << 16 | UInt32(key[3]) << 24
        let k64 = UInt64(k32) | UInt64(k32) << 32
        let start = out.count
        out.append(contentsOf: chunk)
        out.withUnsafeMutableBytes { raw in
            let base = raw.baseAddress! + start
            let n = raw.count - start
            var i = 0
            while i + 8 <= n {
                // Byte order: the key's first byte applies to the lowest address, which a
                // little-endian load puts in the lowest bits (this platform is little-endian).
                let word = base.loadUnaligned(fromByteOffset: i, as: UInt64.self)
                base.storeBytes(of: word ^ k64.littleEndian, toByteOffset: i, as: UInt64.self)
                i += 8
            }
            while i < n {
                base.storeBytes(of: base.load(fromByteOffset: i, as: UInt8.self) ^ key[i & 3], toByteOffset: i, as: UInt8.self)
                i += 1
            }
        }
    }
}
