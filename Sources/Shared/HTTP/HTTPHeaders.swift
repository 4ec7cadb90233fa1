/// An ordered list of header fields. Names keep their case on the wire and compare case-insensitively
/// (RFC 9110 §5.1). Duplicates are kept, never merged: merging hides smuggling attempts.
public struct HTTPHeaders: Sendable, Sequence, ExpressibleByDictionaryLiteral {
    public typealias Field = (name: String, value: String)
    /// The fields in wire order.
    public private(set) var fields: [Field] = []

    public init() {}
    public init(_ fields: [Field]) { fields.forEach { add($0.name, $0.value) } }
    public init(dictionaryLiteral elements: (String, String)...) {
        for (n, v) in elements { add(n, v) }
    }

    public func makeIterator() -> IndexingIterator<[Field]> { fields.makeIterator() }
    public var count: Int { fields.count }

    /// The first value of `name`, or nil.
    public subscript(_ name: String) -> String? {
        for f in fields where f.name.asciiCaseInsensitiveEquals(name) { return f.value }
        return nil
    }

    /// Every value of `name`, in order.
    public func values(_ name: String) -> [String] {
        fields.compactMap { $0.name.asciiCaseInsensitiveEquals(name) ? $0.value : nil }
    }

    /// Whether `name` holds `token` in its comma-separated list (e.g. `Connection: close`).
    public func containsToken(_ name: String, _ token: String) -> Bool {
        for value in values(name) {
            for part in value.split(separator: ",") where part.trimmingSpaces().asciiCaseInsensitiveEquals(token) {
                return true
            }
        }
        return false
    }

    /// Adds a field. CR and LF in a value become spaces, so no value can inject a header line.
    public mutating func add(_ name: String, _ value: String) {
        if value.utf8.contains(where: { $0 == 13 || $0 == 10 }) {
            fields.append((name, String(value.map { $0 == "\r" || $0 == "\n" || $0 == "\r\n" ? " " : $0 })))
        } else {
            fields.append((name, value))
        }
    }

    /// Replaces every field of `name` with one field.
    public mutating func set(_ name: String, _ value: String) {
        remove(name)
        add(name, value)
    }

    /// Removes every field of `name`.
    public mutating func remove(_ name: String) {
        fields.removeAll { $0.name.asciiCaseInsensitiveEquals(name) }
    }
}

extension StringProtocol {
    /// ASCII case-insensitive equality, as header names and tokens need.
    public func asciiCaseInsensitiveEquals<S: StringProtocol>(_ other: S) -> Bool {
        var a = utf8.makeIterator()
        var b = other.utf8.makeIterator()
        while true {
            switch (a.next(), b.next()) {
            case (nil, nil): return true
            case (let x?, let y?):
                if x == y { continue }
                let lx = (x >= 0x41 && x <= 0x5A) ? x | 0x20 : x
                let ly = (y >= 0x41 && y <= 0x5A) ? y | 0x20 : y
                if lx != ly { return false }
            default: return false
            }
        }
    }

    /// Without leading and trailing spaces and tabs (HTTP's OWS).
    public func trimmingSpaces() -> Substring {
        let s = Substring(self)
        guard let first = s.firstIndex(where: { $0 != " " && $0 != "\t" }) else { return s[s.endIndex...] }
        let last = s.lastIndex(where: { $0 != " " && $0 != "\t" })!
        return s[first...last]
    }
}

extension String {
    /// Without leading and trailing characters made only of scalars in `set` (by scalar: "\r\n" in a
    /// set is CR and LF, each trimmed alone or together, not the one grapheme CR LF).
    public func trimmingCharacters(in set: String) -> String {
        let scalars = Set(set.unicodeScalars)
        func trimmed(_ c: Character) -> Bool { c.unicodeScalars.allSatisfy { scalars.contains($0) } }
        var s = Substring(self)
        while let f = s.first, trimmed(f) { s = s.dropFirst() }
        while let l = s.last, trimmed(l) { s = s.dropLast() }
        return String(s)
    }
}

extension HTTPHeaders {
    /// The headers that frame a message (`Connection`, `Content-Length`, `Transfer-Encoding`, `Date`,
    /// `Keep-Alive`): the server and the client each write their own, never a caller's.
    static func isFraming(_ name: String) -> Bool {
        switch name.utf8.count {
        case 4: name.asciiCaseInsensitiveEquals("date")
        case 10: name.asciiCaseInsensitiveEquals("connection") || name.asciiCaseInsensitiveEquals("keep-alive")
        case 14: name.asciiCaseInsensitiveEquals("content-length")
        case 17: name.asciiCaseInsensitiveEquals("transfer-encoding")
        default: false
        }
    }
}
