/// Decoder for the chunked transfer coding (RFC 9112 §7.1), a state machine over raw bytes with no I/O.
/// Chunk extensions are validated and ignored; trailer fields are validated and discarded.
public struct ChunkedDecoder: Sendable {
    /// What one step produced.
    public enum Event: Equatable {
        /// All input was consumed without yielding data; feed more.
        case needMore(consumed: Int)
        /// Body bytes at `range` of the input; `consumed` bytes of input were used up to the range's end.
        case data(range: Range<Int>, consumed: Int)
        /// The last chunk and trailers ended; `consumed` bytes were used.
        case end(consumed: Int)
    }

    enum State: Sendable, Equatable {
        case size(value: Int, digits: Int)
        case extensions
        case sizeLF
        case data(remaining: Int)
        case dataCR
        case dataLF
        case trailerLineStart
        case trailerLine
        case trailerLF(empty: Bool)
        case done
    }

    var state = State.size(value: 0, digits: 0)
    var metadataBytes = 0
    /// The size read on the current chunk-size line, kept while its extensions and CRLF are read.
    var lastSize = 0
    let maxMetadataBytes: Int

    public init(maxMetadataBytes: Int = 16 * 1024) {
        self.maxMetadataBytes = maxMetadataBytes
    }

    /// Whether the terminating chunk and trailers have been read.
    public var isDone: Bool { state == .done }

    static func bad(_ m: String) -> HTTPError { HTTPError(.badRequest, "bad chunked encoding: \(m)", closesConnection: true) }

    /// Consumes input until it yields data, ends, or runs out.
    public mutating func next(_ input: UnsafeRawBufferPointer) throws(HTTPError) -> Event {
        var i = 0
        let n = input.count
        while i < n {
            let b = input[i]
            switch state {
            case .size(let value, let digits):
                if let h = hexValue(b) {
                    if digits >= 15 { throw Self.bad("chunk size too large") }
                    state = .size(value: value << 4 | Int(h), digits: digits + 1)
                    i += 1
                } else if digits == 0 {
                    throw Self.bad("missing chunk size")
                } else if b == 13 {
                    lastSize = value
                    state = .sizeLF
                    i += 1
                } else if b == UInt8(ascii: ";") || b == UInt8(ascii: " ") || b == 9 {
                    lastSize = value
                    state = .extensions
                    i += 1
                } else {
                    throw Self.bad("invalid character in chunk size")
                }
            case .extensions:
                if b == 13 {
                    state = .sizeLF
                } else if b == 10 || (b < 0x20 && b != 9) || b == 0x7F {
                    throw Self.bad("invalid character in chunk extension")
                } else {
                    metadataBytes += 1
                    if metadataBytes > maxMetadataBytes { throw Self.bad("chunk extensions too long") }
                }
                i += 1
            case .sizeLF:
                guard b == 10 else { throw Self.bad("chunk size line not ended by CRLF") }
                i += 1
                state = lastSize == 0 ? .trailerLineStart : .data(remaining: lastSize)
            case .data(let remaining):
                let take = min(remaining, n - i)
                let left = remaining - take
                state = left == 0 ? .dataCR : .data(remaining: left)
                return .data(range: i..<(i + take), consumed: i + take)
            case .dataCR:
                guard b == 13 else { throw Self.bad("chunk data not followed by CRLF") }
                state = .dataLF
                i += 1
            case .dataLF:
                guard b == 10 else { throw Self.bad("chunk data not followed by CRLF") }
                state = .size(value: 0, digits: 0)
                i += 1
            case .trailerLineStart:
                if b == 13 {
                    state = .trailerLF(empty: true)
                } else if b == 32 || b == 9 {
                    throw Self.bad("obs-fold in trailer")
                } else {
                    state = .trailerLine
                }
                i += 1
            case .trailerLine:
                if b == 13 {
                    state = .trailerLF(empty: false)
                } else if b == 10 || (b < 0x20 && b != 9) || b == 0x7F {
                    throw Self.bad("invalid character in trailer")
                }
                metadataBytes += 1
                if metadataBytes > maxMetadataBytes { throw Self.bad("trailer section too long") }
                i += 1
            case .trailerLF(let empty):
                guard b == 10 else { throw Self.bad("trailer line not ended by CRLF") }
                i += 1
                if empty {
                    state = .done
                    return .end(consumed: i)
                }
                state = .trailerLineStart
            case .done:
                return .end(consumed: i)
            }
        }
        if state == .done { return .end(consumed: i) }
        return .needMore(consumed: i)
    }
}
