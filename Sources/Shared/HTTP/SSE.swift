/// One server-sent event (HTML Living Standard, "Server-sent events", §9.2.6).
public struct SSEEvent: Sendable, Equatable {
    public var event: String?
    public var data: String
    public var id: String?
    public var retry: Int?

    public init(event: String? = nil, data: String, id: String? = nil, retry: Int? = nil) {
        self.event = event
        self.data = data
        self.id = id
        self.retry = retry
    }

    /// The wire form: fields, one `data:` line per line of data, then a blank line.
    public func encoded() -> [UInt8] {
        var s = ""
        if let event { s += "event: \(event)\n" }
        if let id { s += "id: \(id)\n" }
        if let retry { s += "retry: \(retry)\n" }
        var start = data.startIndex
        var lines: [Substring] = []
        var i = data.startIndex
        while i < data.endIndex {
            let c = data[i]
            if c == "\n" || c == "\r" || c == "\r\n" {
                lines.append(data[start..<i])
                start = data.index(after: i)
            }
            i = data.index(after: i)
        }
        lines.append(data[start...])
        for line in lines { s += "data: \(line)\n" }
        s += "\n"
        return Array(s.utf8)
    }

    /// A comment line, used as a keep-alive ping (`: ping`).
    public static func comment(_ text: String = "ping") -> [UInt8] { Array(": \(text)\n\n".utf8) }
}

/// Incremental SSE parser: feed bytes as they arrive, get events as each blank line ends one.
/// Lines may end in CRLF, LF or CR, including a CRLF split across two reads.
public struct SSEParser: Sendable {
    /// What the stream carried.
    public enum Item: Sendable, Equatable {
        case event(SSEEvent)
        case comment(String)
    }

    private var line: [UInt8] = []
    private var lastWasCR = false
    private var data: [UInt8] = []
    private var hasData = false
    private var eventType: String?
    private var id: String?
    private var retry: Int?
    /// Longest line accepted; longer lines are truncated (a runaway upstream cannot exhaust memory).
    public var maxLineBytes = 16 << 20

    public init() {}

    /// Consumes bytes and returns the items they completed.
    public mutating func feed<C: Collection>(_ bytes: C) -> [Item] where C.Element == UInt8 {
        var items: [Item] = []
        for b in bytes {
            if lastWasCR {
                lastWasCR = false
                if b == 10 { continue }
            }
            if b == 10 || b == 13 {
                lastWasCR = b == 13
                if let item = processLine() { items.append(item) }
                line.removeAll(keepingCapacity: true)
            } else if line.count < maxLineBytes {
                line.append(b)
            }
        }
        return items
    }

    private mutating func processLine() -> Item? {
        if line.isEmpty {
            defer {
                data.removeAll(keepingCapacity: true)
                hasData = false
                eventType = nil
                retry = nil
            }
            guard hasData else { return nil }
            if data.last == 10 { data.removeLast() }
            return .event(SSEEvent(event: eventType, data: String(decoding: data, as: UTF8.self), id: id, retry: retry))
        }
        if line[0] == UInt8(ascii: ":") {
            var text = line.dropFirst()
            if text.first == 32 { text = text.dropFirst() }
            return .comment(String(decoding: text, as: UTF8.self))
        }
        let field: ArraySlice<UInt8>
        var value: ArraySlice<UInt8>
        if let colon = line.firstIndex(of: UInt8(ascii: ":")) {
            field = line[..<colon]
            value = line[(colon + 1)...]
            if value.first == 32 { value = value.dropFirst() }
        } else {
            field = line[...]
            value = []
        }
        switch String(decoding: field, as: UTF8.self) {
        case "data":
            data.append(contentsOf: value)
            data.append(10)
            hasData = true
        case "event":
            eventType = String(decoding: value, as: UTF8.self)
        case "id":
            if !value.contains(0) { id = String(decoding: value, as: UTF8.self) }
        case "retry":
            if !value.isEmpty, value.allSatisfy({ $0 >= 48 && $0 <= 57 }) { retry = Int(String(decoding: value, as: UTF8.self)) }
        default:
            break
        }
        return nil
    }
}
