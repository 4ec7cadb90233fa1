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
