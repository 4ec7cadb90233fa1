/// Codable to and from JSON through `JSONValue`, so no service links Foundation: `Encoder` and
/// `Decoder` are the standard library's, `JSONParser` and `JSONWriter` are ours. Dropping
/// `FoundationEssentials` (JSONEncoder/JSONDecoder were all the services used of it) took 3 MB off each
/// process's resident memory (docs/benchmarks.md).
///
/// Behaviour follows swift-foundation's coders where a caller can see it: a missing key is
/// `keyNotFound`, a null where a value is needed `valueNotFound`, a wrong kind `typeMismatch`, each with
/// its coding path; `decodeIfPresent` treats null and absence alike; integers must fit their type. Two
/// differences: objects keep the order their keys were encoded in (or are sorted on request), and a
/// non-finite double is written as `null` rather than refused.
public enum JSONCoder {
    /// Compact JSON text (or pretty, two-space indented, as config files are written).
    public static func encode<T: Encodable>(_ value: T, sortedKeys: Bool = false, pretty: Bool = false) throws -> [UInt8] {
        JSONWriter.bytes(try encodeValue(value, sortedKeys: sortedKeys), pretty: pretty)
    }

    /// The value as a JSON tree.
    public static func encodeValue<T: Encodable>(_ value: T, sortedKeys: Bool = false) throws -> JSONValue {
        if let v = value as? JSONValue { return sortedKeys ? v.sortingKeys() : v }
        let encoder = TreeEncoder(codingPath: [])
        try value.encode(to: encoder)
        return encoder.root?.value(sortedKeys: sortedKeys) ?? .object(JSONObject())
    }

    /// Decodes JSON text. Text that is not JSON is `DecodingError.dataCorrupted` with an empty coding path
    /// and the `JSONSyntaxError` (line, column) as its underlying error.
    public static func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8]) throws -> T {
        let tree: JSONValue
        do {
            tree = try JSONParser.parse(bytes).0
        } catch {
            throw DecodingError.dataCorrupted(.init(codingPath: [], debugDescription: "not valid JSON: \(error)", underlyingError: error))
        }
        return try decode(type, from: tree)
    }

    /// Decodes a JSON tree.
    public static func decode<T: Decodable>(_ type: T.Type, from value: JSONValue) throws -> T {
        if T.self == JSONValue.self { return value as! T }
        return try T(from: TreeDecoder(value: value, codingPath: []))
    }
}

extension JSONValue {
    /// The same value with every object's keys in ascending order.
    public func sortingKeys() -> JSONValue {
        switch self {
        case .array(let items): .array(items.map { $0.sortingKeys() })
        case .object(let o): .object(JSONObject(o.entries.sorted { $0.key < $1.key }.map { ($0.key, $0.value.sortingKeys()) }))
        default: self
        }
    }
}

/// The key of a dictionary entry or array element in a coding path.
struct JSONKey: CodingKey {
    let stringValue: String
    let intValue: Int?
    init(stringValue: String) { self.stringValue = stringValue; intValue = nil }
    init(intValue: Int) { stringValue = "\(intValue)"; self.intValue = intValue }
    init(_ index: Int) { self.init(intValue: index) }
    static let `super` = JSONKey(stringValue: "super")
}

// MARK: Encoding

/// A node of the tree being encoded. Containers hand out references to their children, because
/// `Encoder` lets a nested container be filled after it was created.
final class EncodedNode {
    enum Content {
        case value(JSONValue)
        case object([(String, EncodedNode)])
        case array([EncodedNode])
    }
    var content: Content
    init(_ content: Content) { self.content = content }

    func value(sortedKeys: Bool) -> JSONValue {
        switch content {
        case .value(let v): return sortedKeys ? v.sortingKeys() : v
        case .array(let items): return .array(items.map { $0.value(sortedKeys: sortedKeys) })
        case .object(let entries):
            var seen: [String: Int] = [:]
            var out: [(String, JSONValue)] = []
            for (k, node) in entries {
                // A key encoded twice keeps its first position and its last value, as a dictionary would.
                if let i = seen[k] { out[i].1 = node.value(sortedKeys: sortedKeys); continue }
                seen[k] = out.count
                out.append((k, node.value(sortedKeys: sortedKeys)))
            }
            if sortedKeys { out.sort { $0.0 < $1.0 } }
            return .object(JSONObject(uniqueEntries: out))
        }
    }

    func append(_ key: String, _ node: EncodedNode) {
        if case .object(var entries) = content {
            content = .value(.null) // drop the reference so the append does not copy
            entries.append((key, node))
            content = .object(entries)
        }
    }

    func append(_ node: EncodedNode) {
        if case .array(var items) = content {
            content = .value(.null)
            items.append(node)
            content = .array(items)
        }
    }

    var count: Int {
        if case .array(let items) = content { return items.count }
        if case .object(let entries) = content { return entries.count }
        return 0
    }
}

final class TreeEncoder: Encoder {
    let codingPath: [any CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }
    var root: EncodedNode?

    init(codingPath: [any CodingKey]) { self.codingPath = codingPath }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        let node: EncodedNode
        if let root, case .object = root.content { node = root } else { node = EncodedNode(.object([])); root = node }
        return KeyedEncodingContainer(KeyedEncoder<Key>(node: node, codingPath: codingPath))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        let node: EncodedNode
        if let root, case .array = root.content { node = root } else { node = EncodedNode(.array([])); root = node }
        return UnkeyedEncoder(node: node, codingPath: codingPath)
    }

    func singleValueContainer() -> any SingleValueEncodingContainer { SingleEncoder(encoder: self) }

    /// Encodes one value below this one: scalars directly, anything else through a child encoder.
    static func node<T: Encodable>(_ value: T, at path: @autoclosure () -> [any CodingKey]) throws -> EncodedNode {
        switch value {
        case let v as String: return EncodedNode(.value(.string(v)))
        case let v as Int: return EncodedNode(.value(.int(v)))
        case let v as Bool: return EncodedNode(.value(.bool(v)))
        case let v as Double: return EncodedNode(.value(.double(v)))
        case let v as JSONValue: return EncodedNode(.value(v))
        default:
            let child = TreeEncoder(codingPath: path())
            try value.encode(to: child)
            return child.root ?? EncodedNode(.object([]))
        }
    }
}

/// Integers of every width as JSON numbers.
func jsonNumber<T: BinaryInteger>(_ v: T) -> JSONValue {
    if let i = Int(exactly: v) { return .int(i) }
    return .double(Double(v))
}

/// Keyed and unkeyed containers implement the common scalars; the standard library's defaults send the
/// other widths (Int8…UInt64, Float) through `encode<T>`, and so to `SingleEncoder`.
struct KeyedEncoder<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let node: EncodedNode
    let codingPath: [any CodingKey]

    private func put(_ v: JSONValue, _ key: Key) { node.append(key.stringValue, EncodedNode(.value(v))) }

    mutating func encodeNil(forKey key: Key) throws { put(.null, key) }
    mutating func encode(_ value: Bool, forKey key: Key) throws { put(.bool(value), key) }
    mutating func encode(_ value: String, forKey key: Key) throws { put(.string(value), key) }
    mutating func encode(_ value: Double, forKey key: Key) throws { put(.double(value), key) }
    mutating func encode(_ value: Int, forKey key: Key) throws { put(.int(value), key) }
    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
        node.append(key.stringValue, try TreeEncoder.node(value, at: codingPath + [key]))
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type, forKey key: Key) -> KeyedEncodingContainer<NestedKey> {
        let child = EncodedNode(.object([]))
        node.append(key.stringValue, child)
        return KeyedEncodingContainer(KeyedEncoder<NestedKey>(node: child, codingPath: codingPath + [key]))
    }

    mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
        let child = EncodedNode(.array([]))
        node.append(key.stringValue, child)
        return UnkeyedEncoder(node: child, codingPath: codingPath + [key])
    }

    mutating func superEncoder() -> any Encoder { superEncoder(name: JSONKey.super) }
    mutating func superEncoder(forKey key: Key) -> any Encoder { superEncoder(name: key) }

    private func superEncoder(name: any CodingKey) -> any Encoder {
        let encoder = TreeEncoder(codingPath: codingPath + [name])
        let slot = EncodedNode(.object([]))
        encoder.root = slot
        node.append(name.stringValue, slot)
        return encoder
    }
}

struct UnkeyedEncoder: UnkeyedEncodingContainer {
    let node: EncodedNode
    let codingPath: [any CodingKey]
    var count: Int { node.count }

    private func put(_ v: JSONValue) { node.append(EncodedNode(.value(v))) }

    mutating func encodeNil() throws { put(.null) }
    mutating func encode(_ value: Bool) throws { put(.bool(value)) }
    mutating func encode(_ value: String) throws { put(.string(value)) }
    mutating func encode(_ value: Double) throws { put(.double(value)) }
    mutating func encode(_ value: Int) throws { put(.int(value)) }
    mutating func encode<T: Encodable>(_ value: T) throws {
        node.append(try TreeEncoder.node(value, at: codingPath + [JSONKey(count)]))
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
        let child = EncodedNode(.object([]))
        let path = codingPath + [JSONKey(count)]
        node.append(child)
        return KeyedEncodingContainer(KeyedEncoder<NestedKey>(node: child, codingPath: path))
    }

    mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
        let child = EncodedNode(.array([]))
        let path = codingPath + [JSONKey(count)]
        node.append(child)
        return UnkeyedEncoder(node: child, codingPath: path)
    }

    mutating func superEncoder() -> any Encoder {
        let encoder = TreeEncoder(codingPath: codingPath + [JSONKey(count)])
        let slot = EncodedNode(.object([]))
        encoder.root = slot
        node.append(slot)
        return encoder
    }
}

struct SingleEncoder: SingleValueEncodingContainer {
    let encoder: TreeEncoder
    var codingPath: [any CodingKey] { encoder.codingPath }

    private func put(_ v: JSONValue) { encoder.root = EncodedNode(.value(v)) }

    mutating func encodeNil() throws { put(.null) }
    mutating func encode(_ value: Bool) throws { put(.bool(value)) }
    mutating func encode(_ value: String) throws { put(.string(value)) }
    mutating func encode(_ value: Double) throws { put(.double(value)) }
    mutating func encode(_ value: Float) throws { put(.double(Double(value))) }
    mutating func encode(_ value: Int) throws { put(.int(value)) }
    mutating func encode(_ value: Int8) throws { put(jsonNumber(value)) }
    mutating func encode(_ value: Int16) throws { put(jsonNumber(value)) }
    mutating func encode(_ value: Int32) throws { put(jsonNumber(value)) }
    mutating func encode(_ value: Int64) throws { put(jsonNumber(value)) }
    mutating func encode(_ value: UInt) throws { put(jsonNumber(value)) }
    mutating func encode(_ value: UInt8) throws { put(jsonNumber(value)) }
    mutating func encode(_ value: UInt16) throws { put(jsonNumber(value)) }
    mutating func encode(_ value: UInt32) throws { put(jsonNumber(value)) }
    mutating func encode(_ value: UInt64) throws { put(jsonNumber(value)) }
    mutating func encode<T: Encodable>(_ value: T) throws {
        encoder.root = try TreeEncoder.node(value, at: codingPath)
    }
}

// MARK: Decoding

struct TreeDecoder: Decoder {
    let value: JSONValue
    let codingPath: [any CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        guard case .object(let o) = value else { throw mismatch([String: Any].self, value, codingPath) }
        return KeyedDecodingContainer(KeyedDecoder<Key>(object: o, codingPath: codingPath))
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        guard case .array(let items) = value else { throw mismatch([Any].self, value, codingPath) }
        return UnkeyedDecoder(items: items, codingPath: codingPath)
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer { SingleDecoder(value: value, codingPath: codingPath) }

    /// Decodes `value` as `T` at `path`: scalars directly, anything else through a child decoder.
    static func decode<T: Decodable>(_ type: T.Type, from value: JSONValue, at path: @autoclosure () -> [any CodingKey]) throws -> T {
        if T.self == JSONValue.self { return value as! T }
        if T.self == String.self { return try scalar(String.self, value, path()) { if case .string(let s) = $0 { s } else { nil } } as! T }
        if T.self == Int.self { return try integer(Int.self, value, path()) as! T }
        if T.self == Bool.self { return try scalar(Bool.self, value, path()) { if case .bool(let b) = $0 { b } else { nil } } as! T }
        if T.self == Double.self { return try double(value, path()) as! T }
        return try T(from: TreeDecoder(value: value, codingPath: path()))
    }
}

private func kindName(_ v: JSONValue) -> String {
    switch v {
    case .null: "null"
    case .bool: "a boolean"
    case .int, .double: "a number"
    case .string: "a string"
    case .array: "an array"
    case .object: "an object"
    }
}

private func mismatch(_ type: Any.Type, _ value: JSONValue, _ path: @autoclosure () -> [any CodingKey]) -> DecodingError {
    if case .null = value {
        return .valueNotFound(type, .init(codingPath: path(), debugDescription: "Expected \(type) value but found null instead."))
    }
    return .typeMismatch(type, .init(codingPath: path(), debugDescription: "Expected to decode \(type) but found \(kindName(value)) instead."))
}

private func scalar<T>(_ type: T.Type, _ value: JSONValue, _ path: @autoclosure () -> [any CodingKey], _ get: (JSONValue) -> T?) throws -> T {
    guard let v = get(value) else { throw mismatch(type, value, path()) }
    return v
}

private func integer<T: FixedWidthInteger>(_ type: T.Type, _ value: JSONValue, _ path: @autoclosure () -> [any CodingKey]) throws -> T {
    switch value {
    case .int(let i):
        if let v = T(exactly: i) { return v }
    case .double(let d):
        if let v = T(exactly: d) { return v }
        if d.rounded() != d { throw mismatch(type, value, path()) }
    default:
        throw mismatch(type, value, path())
    }
    throw DecodingError.dataCorrupted(.init(codingPath: path(), debugDescription: "Number \(value) does not fit in \(type)."))
}

private func double(_ value: JSONValue, _ path: @autoclosure () -> [any CodingKey]) throws -> Double {
    switch value {
    case .int(let i): return Double(i)
    case .double(let d): return d
    default: throw mismatch(Double.self, value, path())
    }
}

/// As with encoding, the other integer widths and Float reach `SingleDecoder` through `decode<T>`.
struct KeyedDecoder<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let object: JSONObject
    let codingPath: [any CodingKey]

    var allKeys: [Key] { object.keys.compactMap { Key(stringValue: $0) } }
    func contains(_ key: Key) -> Bool { object[key.stringValue] != nil }

    private func value(_ key: Key) throws -> JSONValue {
        guard let v = object[key.stringValue] else {
            throw DecodingError.keyNotFound(key, .init(codingPath: codingPath, debugDescription: "No value associated with key \(key.stringValue)."))
        }
        return v
    }

    func decodeNil(forKey key: Key) throws -> Bool {
        if case .null = try value(key) { return true }
        return false
    }

    func decode(_ type: Bool.Type, forKey key: Key) throws -> Bool { try TreeDecoder.decode(type, from: value(key), at: codingPath + [key]) }
    func decode(_ type: String.Type, forKey key: Key) throws -> String { try TreeDecoder.decode(type, from: value(key), at: codingPath + [key]) }
    func decode(_ type: Double.Type, forKey key: Key) throws -> Double { try double(value(key), codingPath + [key]) }
    func decode(_ type: Int.Type, forKey key: Key) throws -> Int { try integer(type, value(key), codingPath + [key]) }
    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T { try TreeDecoder.decode(type, from: value(key), at: codingPath + [key]) }

    func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws -> KeyedDecodingContainer<NestedKey> {
        try TreeDecoder(value: value(key), codingPath: codingPath + [key]).container(keyedBy: type)
    }

    func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
        try TreeDecoder(value: value(key), codingPath: codingPath + [key]).unkeyedContainer()
    }

    func superDecoder() throws -> any Decoder {
        TreeDecoder(value: object[JSONKey.super.stringValue] ?? .null, codingPath: codingPath + [JSONKey.super])
    }

    func superDecoder(forKey key: Key) throws -> any Decoder {
        TreeDecoder(value: object[key.stringValue] ?? .null, codingPath: codingPath + [key])
    }
}

struct UnkeyedDecoder: UnkeyedDecodingContainer {
    let items: [JSONValue]
    let codingPath: [any CodingKey]
    var currentIndex = 0

    init(items: [JSONValue], codingPath: [any CodingKey]) {
        self.items = items
        self.codingPath = codingPath
    }

    var count: Int? { items.count }
    var isAtEnd: Bool { currentIndex >= items.count }

    private mutating func next<T>(_ type: T.Type, _ body: (JSONValue, @autoclosure () -> [any CodingKey]) throws -> T) throws -> T {
        let index = currentIndex
        guard !isAtEnd else {
            throw DecodingError.valueNotFound(type, .init(codingPath: codingPath + [JSONKey(index)], debugDescription: "Unkeyed container is at end."))
        }
        let v = try body(items[index], codingPath + [JSONKey(index)])
        currentIndex += 1
        return v
    }

    mutating func decodeNil() throws -> Bool {
        guard !isAtEnd else { return false }
        if case .null = items[currentIndex] {
            currentIndex += 1
            return true
        }
        return false
    }

    mutating func decode(_ type: Bool.Type) throws -> Bool { try next(type) { try TreeDecoder.decode(type, from: $0, at: $1()) } }
    mutating func decode(_ type: String.Type) throws -> String { try next(type) { try TreeDecoder.decode(type, from: $0, at: $1()) } }
    mutating func decode(_ type: Double.Type) throws -> Double { try next(type) { try double($0, $1()) } }
    mutating func decode(_ type: Int.Type) throws -> Int { try next(type) { try integer(type, $0, $1()) } }
    mutating func decode<T: Decodable>(_ type: T.Type) throws -> T { try next(type) { try TreeDecoder.decode(type, from: $0, at: $1()) } }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws -> KeyedDecodingContainer<NestedKey> {
        try next(KeyedDecodingContainer<NestedKey>.self) { try TreeDecoder(value: $0, codingPath: $1()).container(keyedBy: type) }
    }

    mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer {
        try next((any UnkeyedDecodingContainer).self) { try TreeDecoder(value: $0, codingPath: $1()).unkeyedContainer() }
    }

    mutating func superDecoder() throws -> any Decoder {
        try next((any Decoder).self) { TreeDecoder(value: $0, codingPath: $1()) }
    }
}

struct SingleDecoder: SingleValueDecodingContainer {
    let value: JSONValue
    let codingPath: [any CodingKey]

    func decodeNil() -> Bool {
        if case .null = value { return true }
        return false
    }

    func decode(_ type: Bool.Type) throws -> Bool { try TreeDecoder.decode(type, from: value, at: codingPath) }
    func decode(_ type: String.Type) throws -> String { try TreeDecoder.decode(type, from: value, at: codingPath) }
    func decode(_ type: Double.Type) throws -> Double { try double(value, codingPath) }
    func decode(_ type: Float.Type) throws -> Float { Float(try double(value, codingPath)) }
    func decode(_ type: Int.Type) throws -> Int { try integer(type, value, codingPath) }
    func decode(_ type: Int8.Type) throws -> Int8 { try integer(type, value, codingPath) }
    func decode(_ type: Int16.Type) throws -> Int16 { try integer(type, value, codingPath) }
    func decode(_ type: Int32.Type) throws -> Int32 { try integer(type, value, codingPath) }
    func decode(_ type: Int64.Type) throws -> Int64 { try integer(type, value, codingPath) }
    func decode(_ type: UInt.Type) throws -> UInt { try integer(type, value, codingPath) }
    func decode(_ type: UInt8.Type) throws -> UInt8 { try integer(type, value, codingPath) }
    func decode(_ type: UInt16.Type) throws -> UInt16 { try integer(type, value, codingPath) }
    func decode(_ type: UInt32.Type) throws -> UInt32 { try integer(type, value, codingPath) }
    func decode(_ type: UInt64.Type) throws -> UInt64 { try integer(type, value, codingPath) }
    func decode<T: Decodable>(_ type: T.Type) throws -> T { try TreeDecoder.decode(type, from: value, at: codingPath) }
}
