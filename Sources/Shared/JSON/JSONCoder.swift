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
