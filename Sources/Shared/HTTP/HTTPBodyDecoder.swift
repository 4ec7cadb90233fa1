/// Takes a message body out of a connection's input buffer, whatever its framing: Content-Length,
/// chunked, or until the connection closes. No I/O: the server and the client call `next`, and read
/// more bytes into the buffer when it says `.needMore`.
struct HTTPBodyDecoder {
    enum Step {
        case data([UInt8])
        case end
        case needMore
    }

    private enum State { case done, length(Int), chunked, untilClose }
    private var state: State
    private var chunked: ChunkedDecoder

    init(framing: HTTPBodyFraming, maxChunkMetadataBytes: Int = 16 * 1024) {
        switch framing {
        case .none, .length(0): state = .done
        case .length(let n): state = .length(n)
        case .chunked: state = .chunked
        case .untilClose: state = .untilClose
        }
        chunked = ChunkedDecoder(maxMetadataBytes: maxChunkMetadataBytes)
    }

    /// Whether the whole body has been taken.
    var isDone: Bool { if case .done = state { true } else { false } }

    /// The next piece of body from `input`, the end, or a request for more bytes.
    mutating func next(_ input: ByteBuffer) throws(HTTPError) -> Step {
        while true {
            switch state {
            case .done:
                return .end
            case .length(let remaining):
                guard input.readableCount > 0 else { return .needMore }
                let take = min(remaining, input.readableCount)
                let piece = Array(UnsafeRawBufferPointer(rebasing: input.readable[0..<take]))
                input.consume(take)
                state = remaining == take ? .done : .length(remaining - take)
                return .data(piece)
            case .chunked:
                guard input.readableCount > 0 else { return .needMore }
                switch try chunked.next(input.readable) {
                case .data(let range, let consumed):
                    let piece = Array(UnsafeRawBufferPointer(rebasing: input.readable[range]))
                    input.consume(consumed)
                    return .data(piece)
                case .end(let consumed):
                    input.consume(consumed)
                    state = .done
                    return .end
                case .needMore(let consumed):
                    input.consume(consumed)
                    return .needMore
                }
            case .untilClose:
                guard input.readableCount > 0 else { return .needMore }
                let piece = input.readableArray()
                input.clear()
                return .data(piece)
            }
        }
    }

    /// The connection reached end of stream: the end of an until-close body, otherwise a truncated body.
    mutating func endOfStream() -> Bool {
        if case .untilClose = state {
            state = .done
            return true
        }
        return isDone
    }
}
