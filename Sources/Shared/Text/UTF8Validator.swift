/// Validates UTF-8 incrementally (RFC 3629 §4): bytes may arrive split anywhere, and the first byte
/// that cannot begin or continue a well-formed sequence is reported at once, so a WebSocket text
/// message spread over many frames fails as soon as it goes wrong (RFC 6455 §8.1), not at its end.
/// Overlong forms, surrogates (U+D800–DFFF) and code points beyond U+10FFFF are invalid.
public struct UTF8Validator: Sendable {
    /// Continuation bytes still expected in the current sequence.
    private var needed = 0
    /// The allowed range of the next continuation byte (narrower right after some lead bytes).
    private var low: UInt8 = 0x80
    private var high: UInt8 = 0xBF

    public init() {}

    /// Whether the bytes so far end on a character boundary (a complete message must).
    public var isComplete: Bool { needed == 0 }

    /// Feeds bytes; false as soon as they cannot be (a prefix of) valid UTF-8. Once false, stays invalid.
    public mutating func feed(_ bytes: UnsafeRawBufferPointer) -> Bool {
        if needed < 0 { return false }
        var i = 0
        let n = bytes.count
        while i < n {
            let b = bytes[i]
            if needed == 0 {
                // ASCII runs are the common case: skip them eight at a time.
                if b < 0x80 {
                    i += 1
                    while i + 8 <= n {
                        let word = bytes.loadUnaligned(fromByteOffset: i, as: UInt64.self)
                        if word & 0x8080_8080_8080_8080 != 0 { break }
                        i += 8
                    }
                    continue
                }
                switch b {
                case 0xC2...0xDF: needed = 1; low = 0x80; high = 0xBF
                case 0xE0: needed = 2; low = 0xA0; high = 0xBF
                case 0xE1...0xEC, 0xEE...0xEF: needed = 2; low = 0x80; high = 0xBF
                case 0xED: needed = 2; low = 0x80; high = 0x9F
                case 0xF0: needed = 3; low = 0x90; high = 0xBF
                case 0xF1...0xF3: needed = 3; low = 0x80; high = 0xBF
                case 0xF4: needed = 3; low = 0x80; high = 0x8F
                default: needed = -1; return false
                }
            } else {
                guard needed > 0, b >= low, b <= high else { needed = -1; return false }
                needed -= 1
                low = 0x80
                high = 0xBF
            }
            i += 1
        }
        return true
    }

    /// Feeds an array of bytes.
    public mutating func feed(_ bytes: [UInt8]) -> Bool { bytes.withUnsafeBytes { feed($0) } }

    /// Whether `bytes` are complete, valid UTF-8.
    public static func isValid(_ bytes: [UInt8]) -> Bool {
        var v = UTF8Validator()
        return v.feed(bytes) && v.isComplete
    }
}
