/// WebSocket frame vocabulary (RFC 6455 §5.2) and the encoder for outgoing frames.
public enum WebSocketOpcode: UInt8, Sendable {
    case continuation = 0x0, text = 0x1, binary = 0x2, close = 0x8, ping = 0x9, pong = 0xA

    /// Close, ping and pong (RFC 6455 §5.5): at most 125 payload bytes, never fragmented.
    public var isControl: Bool { rawValue & 0x8 != 0 }
}

/// Status codes of a Close frame (RFC 6455 §7.4.1; 1012–1014 from the IANA registry).
public enum WebSocketCloseCode {
    public static let normal: UInt16 = 1000
    public static let goingAway: UInt16 = 1001
    public static let protocolError: UInt16 = 1002
    public static let unsupportedData: UInt16 = 1003
    /// Reported locally when a Close frame had no code; never sent (§7.4.1).
    public static let noStatus: UInt16 = 1005
    /// Reported locally when the connection dropped without a Close frame; never sent.
    public static let abnormal: UInt16 = 1006
    public static let invalidPayload: UInt16 = 1007
    public static let policyViolation: UInt16 = 1008
    public static let messageTooBig: UInt16 = 1009
    public static let internalError: UInt16 = 1011

    /// Whether a peer may send `code` in a Close frame (§7.4.1–7.4.2): the defined codes that are
    /// not reserved for local use (1000–1003, 1007–1011, and IANA's 1012–1014), and 3000–4999
    /// (registered and private). Everything else — below 1000, 1004–1006, 1015, 1016–2999, 5000
    /// and up — is a protocol error.
    public static func isValidOnWire(_ code: UInt16) -> Bool {
        switch code {
        case 1000...1003, 1007...1014, 3000...4999: true
        default: false
        }
    }
}

/// Why a connection is failed (RFC 6455 §7.1.7): the code to send in the Close frame and a reason
/// for the log (and, truncated to fit, for the frame).
public struct WebSocketProtocolError: Error, Sendable, Equatable, CustomStringConvertible {
    public let code: UInt16
    public let reason: String
    public init(_ code: UInt16, _ reason: String) {
        self.code = code
        self.reason = reason
    }
    public var description: String { "websocket \(code): \(reason)" }
}

/// Builds frames.
public enum WebSocketFrame {
    /// One frame: FIN (unless `fin` is false), the opcode, the length in its shortest form (§5.2:
    /// "the minimal number of bytes MUST be used") and the payload, masked with `mask` when given
    /// (a client's frames must be; a server's must not be, §5.1).
    public static func encode(_ opcode: WebSocketOpcode, _ payload: some Collection<UInt8>, fin: Bool = true, mask: [UInt8]? = nil,
                              rsv: UInt8 = 0) -> [UInt8] {
        var out: [UInt8] = []
        let n = payload.count
        out.reserveCapacity(n + 14)
        out.append((fin ? 0x80 : 0) | (rsv & 0x7) << 4 | opcode.rawValue)
        let maskBit: UInt8 = mask == nil ? 0 : 0x80
        if n < 126 {
            out.append(maskBit | UInt8(n))
        } else if n <= 0xFFFF {
            out.append(maskBit | 126)
            out.append(UInt8(n >> 8))
            out.append(UInt8(n & 0xFF))
        } else {
            out.append(maskBit | 127)
            for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: UInt64(n) >> UInt64(shift))) }
        }
        if let mask {
            precondition(mask.count == 4, "a WebSocket masking key has 4 bytes")
            out += mask
            var i = 0
            for byte in payload {
                out.append(byte ^ mask[i & 3])
                i += 1
            }
        } else {
            out += payload
        }
        return out
    }

    /// A Close frame's payload: the code, then a UTF-8 reason cut (at a character boundary) to fit
    /// the 125-byte control-frame limit.
    public static func closePayload(code: UInt16, reason: String) -> [UInt8] {
        var out: [UInt8] = [UInt8(code >> 8), UInt8(code & 0xFF)]
        var room = 123
        for scalar in reason.unicodeScalars {
            let bytes = Array(String(scalar).utf8)
            guard bytes.count <= room else { break }
            out += bytes
            room -= bytes.count
        }
        return out
    }
}
