import Shared

/// One finding about a config file: where (file and JSON path) and what.
struct ConfigIssue: Error, Sendable, Equatable, CustomStringConvertible {
    enum Severity: Sendable { case error, warning }
    let file: String
    let path: String
    let message: String
    let severity: Severity

    var description: String { path.isEmpty ? "\(file): \(message)" : "\(file): \(path): \(message)" }
}

/// A JSON path, rendered `models.qwen.parameters.ctx_size` (keys that are not plain identifiers in
/// brackets: `models["my model"]`, indices as `[0]`).
struct JSONPath: Sendable, Equatable, CustomStringConvertible {
    var components: [String] = []

    func appending(_ key: String) -> JSONPath {
        var p = self
        let plain = !key.isEmpty && key.unicodeScalars.allSatisfy { CharacterSetASCII.isIdentifier($0) }
        p.components.append(plain ? (components.isEmpty ? key : ".\(key)") : "[\(JSONWriter.write(.string(key), pretty: false))]")
        return p
    }

    func index(_ i: Int) -> JSONPath {
        var p = self
        p.components.append("[\(i)]")
        return p
    }

    var description: String { components.joined() }
}

enum CharacterSetASCII {
    static func isIdentifier(_ u: Unicode.Scalar) -> Bool {
        (u >= "a" && u <= "z") || (u >= "A" && u <= "Z") || (u >= "0" && u <= "9") || u == "_" || u == "-"
    }
}

/// A string pattern: its regular expression for the JSON Schema, and the same test written out in Swift,
/// so the services need not link Swift's Regex (`_StringProcessing`, ~0.9 MB of each process's memory).
/// `ConfigShapeTests` checks each predicate against its expression.
struct TextPattern: Sendable {
    let regex: String
    let matches: @Sendable (String) -> Bool

    private static func ascii(_ c: Character, _ set: String) -> Bool { c.isASCII && set.contains(c) }
    private static let digits = "0123456789"
    private static let lowerAlnum = "abcdefghijklmnopqrstuvwxyz0123456789"

    /// `80%`, `12.5%`.
    static let percentage = TextPattern(regex: "[0-9]+(\\.[0-9]+)?%") { s in
        guard s.last == "%" else { return false }
        let parts = s.dropLast().split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
        return parts.allSatisfy { !$0.isEmpty && $0.allSatisfy { ascii($0, digits) } }
    }

    /// A llama-server option name in lower case: `flash_attn`, `n-gpu-layers`.
    static let optionName = TextPattern(regex: "[a-z0-9][a-z0-9_-]*") { s in
        guard let first = s.first, ascii(first, lowerAlnum) else { return false }
        return s.dropFirst().allSatisfy { ascii($0, lowerAlnum + "_-") }
    }

    /// A peer's name, the prefix of its models' ids (`box2/qwen3`): letters, digits, `.`, `_`, `-`.
    static let peerName = TextPattern(regex: "[A-Za-z0-9][A-Za-z0-9._-]{0,63}") { s in
        let set = "ABCDEFGHIJKLMNOPQRSTUVWXYZ" + lowerAlnum
        guard let first = s.first, ascii(first, set), s.count <= 64 else { return false }
        return s.dropFirst().allSatisfy { ascii($0, set + "._-") }
    }

    /// An `http://` or `https://` URL with a host and nothing but visible ASCII.
    static let httpURL = TextPattern(regex: "https?://[!-.0-?A-~]+(/[!-~]*)?") { s in
        let rest: Substring
        if s.hasPrefix("http://") { rest = s.dropFirst(7) } else if s.hasPrefix("https://") { rest = s.dropFirst(8) } else { return false }
        let authority = rest.prefix { $0 != "/" }
        guard !authority.isEmpty, authority.allSatisfy({ $0.isASCII && $0 > " " && $0 != "@" && $0 <= "~" }) else { return false }
        return rest.dropFirst(authority.count).allSatisfy { $0.isASCII && $0 > " " && $0 <= "~" }
    }

    /// A model id or alias: 1 to 200 characters, none of them white space or a double quote.
    static let modelID = TextPattern(regex: "[^\\s\"]{1,200}") { s in
        (1...200).contains(s.count) && !s.contains { $0.isWhitespace || $0 == "\"" }
    }
}

/// The shape of a config document, declared once: `validate` checks a document against it with exact
/// JSON paths, and `jsonSchema` renders the same shape as the JSON Schema committed in `config/schema/`.
indirect enum Shape: Sendable {
    struct Field: Sendable {
        let name: String
        let shape: Shape
        let required: Bool
        let doc: String
        init(_ name: String, _ shape: Shape, required: Bool = false, _ doc: String) {
            self.name = name
            self.shape = shape
            self.required = required
            self.doc = doc
        }
    }

    /// What an object does with keys it does not declare.
    enum Others: Sendable {
        /// Accepted with a warning (a typo should be seen, not fatal).
        case warn
        /// A map: every other key's value has this shape; `keyPattern` constrains the keys.
        case map(Shape, keyPattern: TextPattern?, keyHint: String)
    }

    case any
    case string(minLength: Int)
    case pattern(TextPattern, hint: String)
    case integer(min: Int?, max: Int?)
    case number(min: Double?)
    case boolean
    case null
    case oneOfStrings([String])
    case array(Shape)
    case object([Field], others: Others)
    case anyOf([Shape], hint: String)

    static let string = Shape.string(minLength: 0)
    static let nonEmptyString = Shape.string(minLength: 1)
    static func integer(min: Int? = nil) -> Shape { .integer(min: min, max: nil) }

    /// How a value of this shape is described in a message ("an integer ≥ 1").
    var hint: String {
        switch self {
        case .any: "any value"
        case .string(let min): min > 0 ? "a non-empty string" : "a string"
        case .pattern(_, let hint): hint
        case .integer(let min, let max):
            switch (min, max) {
            case (let lo?, let hi?): "an integer from \(lo) to \(hi)"
            case (let lo?, nil): "an integer ≥ \(lo)"
            default: "an integer"
            }
        case .number(let min): min.map { "a number ≥ \(JSONWriter.write(.double($0), pretty: false))" } ?? "a number"
        case .boolean: "true or false"
        case .null: "null"
        case .oneOfStrings(let values): "one of " + values.map { "\"\($0)\"" }.joined(separator: ", ")
        case .array(let item): "an array of \(item.hintPlural)"
        case .object: "an object"
        case .anyOf(_, let hint): hint
        }
    }

    var hintPlural: String {
        switch self {
        case .string, .pattern: "strings"
        case .integer: "integers"
        case .number: "numbers"
        case .object: "objects"
        default: "values"
        }
    }

    /// Checks `value`, appending issues with their paths.
    func validate(_ value: JSONValue, at path: JSONPath, file: String, into issues: inout [ConfigIssue]) {
        func mismatch(_ detail: String? = nil) {
            issues.append(ConfigIssue(file: file, path: path.description,
                                      message: detail ?? "expected \(hint), got \(Self.render(value))", severity: .error))
        }
        switch self {
        case .any:
            return
        case .string(let minLength):
            guard let s = value.stringValue else { return mismatch() }
            if s.count < minLength { mismatch("must not be empty") }
        case .pattern(let pattern, _):
            guard let s = value.stringValue else { return mismatch() }
            if !pattern.matches(s) { mismatch() }
        case .integer(let min, let max):
            guard let i = value.intValue else { return mismatch("expected an integer, got \(Self.render(value))") }
            if let min, i < min { mismatch("expected \(hint), got \(i)") }
            if let max, i > max { mismatch("expected \(hint), got \(i)") }
        case .number(let min):
            guard let d = value.doubleValue else { return mismatch("expected a number, got \(Self.render(value))") }
            if let min, d < min { mismatch() }
        case .boolean:
            if value.boolValue == nil { mismatch() }
        case .null:
            if !value.isNull { mismatch() }
        case .oneOfStrings(let allowed):
            guard let s = value.stringValue, allowed.contains(s) else { return mismatch() }
        case .array(let item):
            guard let items = value.arrayValue else { return mismatch() }
            for (i, v) in items.enumerated() { item.validate(v, at: path.index(i), file: file, into: &issues) }
        case .object(let fields, let others):
            guard let object = value.objectValue else { return mismatch() }
            for field in fields {
                if let v = object[field.name] {
                    field.shape.validate(v, at: path.appending(field.name), file: file, into: &issues)
                } else if field.required {
                    issues.append(ConfigIssue(file: file, path: path.appending(field.name).description, message: "is required", severity: .error))
                }
            }
            let declared = Set(fields.map(\.name))
            for (key, v) in object.entries where !declared.contains(key) {
                switch others {
                case .warn:
                    issues.append(ConfigIssue(file: file, path: path.appending(key).description,
                                              message: "unknown key (ignored)", severity: .warning))
                case .map(let shape, let keyPattern, let keyHint):
                    if let keyPattern, !keyPattern.matches(key) {
                        issues.append(ConfigIssue(file: file, path: path.appending(key).description,
                                                  message: "invalid key: expected \(keyHint)", severity: .error))
                    }
                    shape.validate(v, at: path.appending(key), file: file, into: &issues)
                }
            }
        case .anyOf(let shapes, _):
            for shape in shapes {
                var trial: [ConfigIssue] = []
                shape.validate(value, at: path, file: file, into: &trial)
                if !trial.contains(where: { $0.severity == .error }) { return }
            }
            mismatch()
        }
    }

    static func render(_ value: JSONValue) -> String {
        let text = JSONWriter.write(value, pretty: false)
        return text.count > 60 ? String(text.prefix(57)) + "…" : text
    }

    /// The JSON Schema (draft 2020-12) of this shape.
    func jsonSchema(doc: String? = nil) -> JSONValue {
        var o = JSONObject()
        if let doc { o["description"] = .string(doc) }
        switch self {
        case .any:
            break
        case .string(let min):
            o["type"] = .string("string")
            if min > 0 { o["minLength"] = .int(min) }
        case .pattern(let pattern, _):
            o["type"] = .string("string")
            o["pattern"] = .string("^(?:\(pattern.regex))$")
        case .integer(let min, let max):
            o["type"] = .string("integer")
            if let min { o["minimum"] = .int(min) }
            if let max { o["maximum"] = .int(max) }
        case .number(let min):
            o["type"] = .string("number")
            if let min { o["minimum"] = .double(min) }
        case .boolean:
            o["type"] = .string("boolean")
        case .null:
            o["type"] = .string("null")
        case .oneOfStrings(let values):
            o["enum"] = .array(values.map { .string($0) })
        case .array(let item):
            o["type"] = .string("array")
            o["items"] = item.jsonSchema()
        case .object(let fields, let others):
            o["type"] = .string("object")
            var props = JSONObject()
            for f in fields { props[f.name] = f.shape.jsonSchema(doc: f.doc) }
            if !props.isEmpty { o["properties"] = .object(props) }
            let required = fields.filter(\.required).map { JSONValue.string($0.name) }
            if !required.isEmpty { o["required"] = .array(required) }
            switch others {
            case .warn:
                o["additionalProperties"] = .bool(true)
            case .map(let shape, let keyPattern, _):
                o["additionalProperties"] = shape.jsonSchema()
                if let keyPattern { o["propertyNames"] = .object(JSONObject([("pattern", .string("^(?:\(keyPattern.regex))$"))])) }
            }
        case .anyOf(let shapes, _):
            o["anyOf"] = .array(shapes.map { $0.jsonSchema() })
        }
        return .object(o)
    }
}
