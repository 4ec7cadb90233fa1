/// A JSON document as a tree that keeps object keys in file order, so the registry can validate with
/// exact JSON paths and write a config back without reordering or dropping keys it does not know.
public indirect enum JSONValue: Sendable, Equatable, Codable, CustomStringConvertible {
    case null
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object(JSONObject)

    // MARK: Access

    public subscript(key: String) -> JSONValue? {
        get { if case .object(let o) = self { return o[key] } else { return nil } }
        set {
            guard case .object(var o) = self else { return }
            o[key] = newValue
            self = .object(o)
        }
    }

    public var objectValue: JSONObject? { if case .object(let o) = self { o } else { nil } }
    public var arrayValue: [JSONValue]? { if case .array(let a) = self { a } else { nil } }
    public var stringValue: String? { if case .string(let s) = self { s } else { nil } }
    public var boolValue: Bool? { if case .bool(let b) = self { b } else { nil } }
    public var intValue: Int? {
        switch self {
        case .int(let i): i
        case .double(let d) where d.rounded() == d && abs(d) < 9e15: Int(d)
        default: nil
        }
    }
    public var doubleValue: Double? {
        switch self {
        case .int(let i): Double(i)
        case .double(let d): d
        default: nil
        }
    }
    public var isNull: Bool { self == .null }

    /// The JSON type name for messages: "an integer", "a string", …
    public var typeDescription: String {
        switch self {
        case .null: "null"
        case .bool: "a boolean"
        case .int: "an integer"
        case .double: "a number"
        case .string: "a string"
        case .array: "an array"
        case .object: "an object"
        }
    }

    /// Compact JSON text.
    public var description: String { JSONWriter.write(self, pretty: false) }

    // MARK: Codable (so documents travel over JSON-RPC as they are)

    public init(from decoder: any Decoder) throws {
        if var array = try? decoder.unkeyedContainer() {
            var items: [JSONValue] = []
            while !array.isAtEnd { items.append(try array.decode(JSONValue.self)) }
            self = .array(items)
            return
        }
        if let keyed = try? decoder.container(keyedBy: AnyKey.self) {
            var object = JSONObject()
            for key in keyed.allKeys.sorted(by: { $0.stringValue < $1.stringValue }) {
                object[key.stringValue] = try keyed.decode(JSONValue.self, forKey: key)
            }
            self = .object(object)
            return
        }
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let i = try? c.decode(Int.self) { self = .int(i) }
        else if let d = try? c.decode(Double.self) { self = .double(d) }
        else { self = .string(try c.decode(String.self)) }
    }

    public func encode(to encoder: any Encoder) throws {
        switch self {
        case .null:
            var c = encoder.singleValueContainer()
            try c.encodeNil()
        case .bool(let b):
            var c = encoder.singleValueContainer()
            try c.encode(b)
        case .int(let i):
            var c = encoder.singleValueContainer()
            try c.encode(i)
        case .double(let d):
            var c = encoder.singleValueContainer()
            try c.encode(d)
        case .string(let s):
            var c = encoder.singleValueContainer()
            try c.encode(s)
        case .array(let items):
            var c = encoder.unkeyedContainer()
            for item in items { try c.encode(item) }
        case .object(let o):
            var c = encoder.container(keyedBy: AnyKey.self)
            for (k, v) in o.entries { try c.encode(v, forKey: AnyKey(stringValue: k)) }
        }
    }

    struct AnyKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }
}

/// A JSON object: keys in insertion (file) order, each once.
public struct JSONObject: Sendable, Equatable {
    public private(set) var entries: [(key: String, value: JSONValue)] = []

    public init() {}
    public init(_ entries: [(String, JSONValue)]) {
        for (k, v) in entries { self[k] = v }
    }

    /// Entries whose keys the caller knows to be distinct (no per-key search).
    init(uniqueEntries: [(String, JSONValue)]) {
        entries = uniqueEntries.map { (key: $0.0, value: $0.1) }
    }

    public var keys: [String] { entries.map(\.key) }
    public var isEmpty: Bool { entries.isEmpty }
    public var count: Int { entries.count }

    /// Reads a key; setting nil removes it; setting an existing key keeps its position.
    public subscript(key: String) -> JSONValue? {
        get { entries.first { $0.key == key }?.value }
        set {
            if let i = entries.firstIndex(where: { $0.key == key }) {
                if let newValue { entries[i].value = newValue } else { entries.remove(at: i) }
            } else if let newValue {
                entries.append((key, newValue))
            }
        }
    }

    public static func == (a: JSONObject, b: JSONObject) -> Bool {
        a.entries.count == b.entries.count && zip(a.entries, b.entries).allSatisfy { $0.key == $1.key && $0.value == $1.value }
    }
}

/// A syntax error with its position.
public struct JSONSyntaxError: Error, Sendable, Equatable, CustomStringConvertible {
    public let line: Int
    public let column: Int
    public let message: String
    public var description: String { "line \(line) column \(column): \(message)" }
}

/// A strict JSON parser (RFC 8259) that keeps key order, rejects duplicate keys and reports line and
/// column. One leniency, on request: an unknown escape such as the `\m` of a Windows path
/// (`..\models\x.gguf`) is kept as a backslash and the character, with a warning, so a config
/// written by hand on Windows still loads.
public struct JSONParser {
    let bytes: [UInt8]
    var i = 0
    var line = 1
    var lineStart = 0
    let lenientEscapes: Bool
    /// Warnings collected while parsing (lenient escapes).
    public private(set) var warnings: [String] = []

    public init(_ bytes: [UInt8], lenientEscapes: Bool = false) {
        self.bytes = bytes
        self.lenientEscapes = lenientEscapes
    }

    /// Parses a whole document.
    public static func parse(_ bytes: [UInt8], lenientEscapes: Bool = false) throws(JSONSyntaxError) -> (JSONValue, [String]) {
        var p = JSONParser(bytes, lenientEscapes: lenientEscapes)
        if p.bytes.starts(with: [0xEF, 0xBB, 0xBF]) { p.i = 3 }
        p.skipSpace()
        let v = try p.value(depth: 0)
        p.skipSpace()
        if p.i < p.bytes.count { throw p.error("unexpected text after the end of the document") }
        return (v, p.warnings)
    }

    public static func parse(_ text: String) throws(JSONSyntaxError) -> JSONValue {
        try parse(Array(text.utf8)).0
    }

    func error(_ message: String) -> JSONSyntaxError {
        JSONSyntaxError(line: line, column: i - lineStart + 1, message: message)
    }

    mutating func skipSpace() {
        while i < bytes.count {
            switch bytes[i] {
            case 0x20, 0x09, 0x0D: i += 1
            case 0x0A:
                i += 1
                line += 1
                lineStart = i
            default: return
            }
        }
    }

    mutating func value(depth: Int) throws(JSONSyntaxError) -> JSONValue {
        guard depth < 256 else { throw error("nested too deeply") }
        guard i < bytes.count else { throw error("unexpected end of the document") }
        switch bytes[i] {
        case UInt8(ascii: "{"): return try object(depth: depth)
        case UInt8(ascii: "["): return try array(depth: depth)
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try number()
        default: throw error("unexpected character \(describe(bytes[i]))")
        }
    }

    func describe(_ b: UInt8) -> String {
        b >= 0x20 && b < 0x7F ? "'\(Character(UnicodeScalar(b)))'" : "0x\(String(b, radix: 16))"
    }

    mutating func literal(_ word: String) throws(JSONSyntaxError) {
        let w = Array(word.utf8)
        guard bytes.count - i >= w.count, Array(bytes[i..<(i + w.count)]) == w else { throw error("invalid literal (expected \(word))") }
        i += w.count
    }

    mutating func object(depth: Int) throws(JSONSyntaxError) -> JSONValue {
        i += 1
        var o = JSONObject()
        skipSpace()
        if i < bytes.count && bytes[i] == UInt8(ascii: "}") {
            i += 1
            return .object(o)
        }
        while true {
            skipSpace()
            guard i < bytes.count, bytes[i] == UInt8(ascii: "\"") else { throw error("expected a key in double quotes") }
            let keyLine = line
            let key = try string()
            if o[key] != nil { throw JSONSyntaxError(line: keyLine, column: 1, message: "duplicate key \"\(key)\"") }
            skipSpace()
            guard i < bytes.count, bytes[i] == UInt8(ascii: ":") else { throw error("expected ':' after the key \"\(key)\"") }
            i += 1
            skipSpace()
            o[key] = try value(depth: depth + 1)
            skipSpace()
            guard i < bytes.count else { throw error("unexpected end of the document inside an object") }
            if bytes[i] == UInt8(ascii: ",") {
                i += 1
                continue
            }
            if bytes[i] == UInt8(ascii: "}") {
                i += 1
                return .object(o)
            }
            throw error("expected ',' or '}' after a value")
        }
    }

    mutating func array(depth: Int) throws(JSONSyntaxError) -> JSONValue {
        i += 1
        var items: [JSONValue] = []
        skipSpace()
        if i < bytes.count && bytes[i] == UInt8(ascii: "]") {
            i += 1
            return .array(items)
        }
        while true {
            skipSpace()
            items.append(try value(depth: depth + 1))
            skipSpace()
            guard i < bytes.count else { throw error("unexpected end of the document inside an array") }
            if bytes[i] == UInt8(ascii: ",") {
                i += 1
                continue
            }
            if bytes[i] == UInt8(ascii: "]") {
                i += 1
                return .array(items)
            }
            throw error("expected ',' or ']' after a value")
        }
    }

    mutating func string() throws(JSONSyntaxError) -> String {
        i += 1
        var out: [UInt8] = []
        while true {
            guard i < bytes.count else { throw error("unterminated string") }
            let b = bytes[i]
            if b == UInt8(ascii: "\"") {
                i += 1
                break
            }
            if b < 0x20 { throw error("control character in a string (escape it)") }
            if b != UInt8(ascii: "\\") {
                out.append(b)
                i += 1
                continue
            }
            guard i + 1 < bytes.count else { throw error("unterminated string") }
            let e = bytes[i + 1]
            i += 2
            switch e {
            case UInt8(ascii: "\""): out.append(0x22)
            case UInt8(ascii: "\\"): out.append(0x5C)
            case UInt8(ascii: "/"): out.append(0x2F)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = try hex4()
                if (0xD800..<0xDC00).contains(scalar) {
                    guard i + 1 < bytes.count, bytes[i] == UInt8(ascii: "\\"), bytes[i + 1] == UInt8(ascii: "u") else {
                        throw error("unpaired surrogate in \\u escape")
                    }
                    i += 2
                    let low = try hex4()
                    guard (0xDC00..<0xE000).contains(low) else { throw error("unpaired surrogate in \\u escape") }
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                }
                guard let u = UnicodeScalar(scalar) else { throw error("invalid \\u escape") }
                out.append(contentsOf: Array(String(Character(u)).utf8))
            default:
                guard lenientEscapes else { throw error("invalid escape \\\(Character(UnicodeScalar(e)))") }
                warnings.append("line \(line): \"\\\(Character(UnicodeScalar(e)))\" is not a JSON escape; kept as a backslash (write \\\\ or / in paths)")
                out.append(0x5C)
                out.append(e)
            }
        }
        guard let s = String(validating: out, as: UTF8.self) else { throw error("invalid UTF-8 in a string") }
        return s
    }

    mutating func hex4() throws(JSONSyntaxError) -> UInt32 {
        guard i + 4 <= bytes.count else { throw error("short \\u escape") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            guard let h = hexValue(bytes[i]) else { throw error("invalid \\u escape") }
            v = v << 4 | UInt32(h)
            i += 1
        }
        return v
    }

    mutating func number() throws(JSONSyntaxError) -> JSONValue {
        let start = i
        var isInteger = true
        if bytes[i] == UInt8(ascii: "-") { i += 1 }
        guard i < bytes.count, (48...57).contains(bytes[i]) else { throw error("invalid number") }
        if bytes[i] == 48 {
            i += 1
            if i < bytes.count && (48...57).contains(bytes[i]) { throw error("numbers may not have leading zeros") }
        } else {
            while i < bytes.count && (48...57).contains(bytes[i]) { i += 1 }
        }
        if i < bytes.count && bytes[i] == UInt8(ascii: ".") {
            isInteger = false
            i += 1
            guard i < bytes.count, (48...57).contains(bytes[i]) else { throw error("invalid number: digits must follow '.'") }
            while i < bytes.count && (48...57).contains(bytes[i]) { i += 1 }
        }
        if i < bytes.count && (bytes[i] == UInt8(ascii: "e") || bytes[i] == UInt8(ascii: "E")) {
            isInteger = false
            i += 1
            if i < bytes.count && (bytes[i] == UInt8(ascii: "+") || bytes[i] == UInt8(ascii: "-")) { i += 1 }
            guard i < bytes.count, (48...57).contains(bytes[i]) else { throw error("invalid number exponent") }
            while i < bytes.count && (48...57).contains(bytes[i]) { i += 1 }
        }
        let text = String(decoding: bytes[start..<i], as: UTF8.self)
        if isInteger, let n = Int(text) { return .int(n) }
        guard let d = Double(text) else { throw error("invalid number") }
        return .double(d)
    }
}

/// Writes JSON text: compact, or pretty with two-space indentation (how config files are saved).
/// Bytes are appended straight to a buffer; strings are escaped by scanning their UTF-8 (only `"`, `\\`
/// and control characters change), and `/` is not escaped.
public enum JSONWriter {
    public static func write(_ value: JSONValue, pretty: Bool) -> String {
        String(decoding: bytes(value, pretty: pretty), as: UTF8.self)
    }

    public static func bytes(_ value: JSONValue, pretty: Bool) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(256)
        emit(value, pretty: pretty, indent: 0, into: &out)
        if pretty { out.append(10) }
        return out
    }

    @inline(__always)
    static func append(_ text: StaticString, to out: inout [UInt8]) {
        out.append(contentsOf: UnsafeBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }

    static func indent(_ level: Int, _ out: inout [UInt8]) {
        out.append(contentsOf: repeatElement(0x20, count: 2 * level))
    }

    static func emit(_ value: JSONValue, pretty: Bool, indent level: Int, into out: inout [UInt8]) {
        switch value {
        case .null: append("null", to: &out)
        case .bool(let b): b ? append("true", to: &out) : append("false", to: &out)
        case .int(let i): out.append(contentsOf: String(i).utf8)
        case .double(let d):
            if d.isFinite {
                out.append(contentsOf: (d.rounded() == d && abs(d) < 1e15 ? String(format1: d) : "\(d)").utf8)
            } else {
                append("null", to: &out)
            }
        case .string(let s): escape(s, into: &out)
        case .array(let items):
            if items.isEmpty {
                append("[]", to: &out)
                return
            }
            let scalarsOnly = items.allSatisfy { if case .array = $0 { false } else if case .object = $0 { false } else { true } }
            if !pretty || scalarsOnly {
                out.append(UInt8(ascii: "["))
                for (n, item) in items.enumerated() {
                    if n > 0 { pretty ? append(", ", to: &out) : out.append(UInt8(ascii: ",")) }
                    emit(item, pretty: false, indent: 0, into: &out)
                }
                out.append(UInt8(ascii: "]"))
                return
            }
            append("[\n", to: &out)
            for (n, item) in items.enumerated() {
                indent(level + 1, &out)
                emit(item, pretty: true, indent: level + 1, into: &out)
                n == items.count - 1 ? out.append(10) : append(",\n", to: &out)
            }
            indent(level, &out)
            out.append(UInt8(ascii: "]"))
        case .object(let o):
            if o.isEmpty {
                append("{}", to: &out)
                return
            }
            out.append(UInt8(ascii: "{"))
            if pretty { out.append(10) }
            for (n, entry) in o.entries.enumerated() {
                if pretty { indent(level + 1, &out) }
                escape(entry.key, into: &out)
                pretty ? append(": ", to: &out) : out.append(UInt8(ascii: ":"))
                emit(entry.value, pretty: pretty, indent: level + 1, into: &out)
                if n < o.count - 1 { out.append(UInt8(ascii: ",")) }
                if pretty { out.append(10) }
            }
            if pretty { indent(level, &out) }
            out.append(UInt8(ascii: "}"))
        }
    }

    static func escape(_ s: String, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        var s = s
        s.withUTF8 { utf8 in
            var runStart = 0
            for (i, b) in utf8.enumerated() where b < 0x20 || b == 0x22 || b == 0x5C {
                out.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[runStart..<i]))
                runStart = i + 1
                switch b {
                case 0x22: append("\\\"", to: &out)
                case 0x5C: append("\\\\", to: &out)
                case 0x0A: append("\\n", to: &out)
                case 0x0D: append("\\r", to: &out)
                case 0x09: append("\\t", to: &out)
                default:
                    let hex: [UInt8] = Array("0123456789abcdef".utf8)
                    out.append(contentsOf: [0x5C, UInt8(ascii: "u"), 0x30, 0x30, hex[Int(b >> 4)], hex[Int(b & 15)]])
                }
            }
            out.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[runStart...]))
        }
        out.append(UInt8(ascii: "\""))
    }
}

extension String {
    /// A whole double written with one decimal (`2.0`), so it reads back as a double.
    init(format1 d: Double) { self = "\(Int(d)).0" }
}
