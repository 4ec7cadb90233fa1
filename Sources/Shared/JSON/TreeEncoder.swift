// The encoding half of `JSONCoder`: Codable values into a `JSONValue` tree.

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
