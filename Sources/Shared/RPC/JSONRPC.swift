/// A JSON-RPC 2.0 request id: a number or a string (null is represented by `nil` at use sites).
public enum RPCID: Codable, Sendable, Hashable, CustomStringConvertible {
    case number(Int)
    case string(String)

    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let n = try? c.decode(Int.self) { self = .number(n) } else { self = .string(try c.decode(String.self)) }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .number(let n): try c.encode(n)
        case .string(let s): try c.encode(s)
        }
    }

    public var description: String {
        switch self {
        case .number(let n): "\(n)"
        case .string(let s): s
        }
    }
}

/// A JSON-RPC error object, and the error a handler throws to answer with one.
/// Codes: the spec's -32700…-32603, and this project's application codes from -32000 down.
public struct RPCFault: Error, Codable, Sendable, Equatable, CustomStringConvertible {
    public var code: Int
    public var message: String
    /// Optional structured detail (e.g. the validator's messages, or the current revision on conflict).
    public var data: [String: String]?

    public init(code: Int, message: String, data: [String: String]? = nil) {
        self.code = code
        self.message = message
        self.data = data
    }

    public static let parseErrorCode = -32700
    public static let invalidRequestCode = -32600
    public static let methodNotFoundCode = -32601
    public static let invalidParamsCode = -32602
    public static let internalErrorCode = -32603
    /// Application codes shared by every service.
    public static let notFoundCode = -32004
    public static let conflictCode = -32009
    public static let validationCode = -32022
    public static let busyCode = -32029
    public static let unavailableCode = -32003
    /// The request is understood and refused (a file that is not Llama Runner's to delete).
    public static let refusedCode = -32013
    /// The caller cancelled the request (`rpc.cancel`, or its connection closed).
    public static let cancelledCode = -32800

    public static func invalidParams(_ m: String) -> RPCFault { RPCFault(code: invalidParamsCode, message: m) }
    public static func notFound(_ m: String) -> RPCFault { RPCFault(code: notFoundCode, message: m) }
    public static func internalError(_ m: String) -> RPCFault { RPCFault(code: internalErrorCode, message: m) }

    public var description: String { "\(message) (code \(code))" }
}

/// A method of the control plane: its wire name and its typed params and result, declared once in
/// `Shared` and used by both the server that implements it and the clients that call it.
public protocol RPCMethod {
    associatedtype Params: Codable & Sendable
    associatedtype Result: Codable & Sendable
    /// `<service>.<verb>`, e.g. `runners.acquire`.
    static var name: String { get }
}

/// A notification pushed by a service to its subscribers (no reply).
public protocol RPCNotification {
    associatedtype Params: Codable & Sendable
    static var name: String { get }
}

/// Params or result of a method that has none: encoded as `{}`.
public struct Empty: Codable, Sendable, Equatable {
    public init() {}
}

// MARK: Envelopes

struct RPCRequestOut<P: Encodable>: Encodable {
    let id: RPCID?
    let method: String
    let params: P

    enum CodingKeys: String, CodingKey { case jsonrpc, id, method, params }
    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode("2.0", forKey: .jsonrpc)
        try c.encodeIfPresent(id, forKey: .id)
        try c.encode(method, forKey: .method)
        try c.encode(params, forKey: .params)
    }
}

struct RPCResultOut<R: Encodable>: Encodable {
    let id: RPCID
    let result: R
    enum CodingKeys: String, CodingKey { case jsonrpc, id, result }
    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode("2.0", forKey: .jsonrpc)
        try c.encode(id, forKey: .id)
        try c.encode(result, forKey: .result)
    }
}

struct RPCErrorOut: Encodable {
    let id: RPCID?
    let error: RPCFault
    enum CodingKeys: String, CodingKey { case jsonrpc, id, error }
    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode("2.0", forKey: .jsonrpc)
        if let id { try c.encode(id, forKey: .id) } else { try c.encodeNil(forKey: .id) }
        try c.encode(error, forKey: .error)
    }
}

/// The routing fields of any incoming message, read from its parsed tree; params and result are
/// decoded from the same tree with their real types (each line is parsed once).
struct RPCIncoming: Sendable {
    let message: JSONObject
    let id: RPCID?

    /// Nil when the line is not a JSON object (`parseError` tells whether it was JSON at all).
    init(line: [UInt8]) throws(JSONSyntaxError) {
        guard case .object(let o) = try JSONParser.parse(line).0 else {
            message = JSONObject()
            id = nil
            isObject = false
            return
        }
        message = o
        isObject = true
        switch o["id"] {
        case .int(let n)?: id = .number(n)
        case .string(let s)?: id = .string(s)
        default: id = nil
        }
    }

    let isObject: Bool
    var jsonrpc: String? { message["jsonrpc"]?.stringValue }
    var method: String? { message["method"]?.stringValue }
    var params: JSONValue? { message["params"] }
    /// The reply's error, if it carries one that reads as an error object.
    var error: RPCFault? { message["error"].flatMap { try? JSONCoder.decode(RPCFault.self, from: $0) } }

    /// The params as `P`; nil when absent or null.
    func params<P: Decodable>(as type: P.Type) throws -> P? { try Self.member(params, "params", as: type) }

    /// The result as `R`; nil when absent or null.
    func result<R: Decodable>(as type: R.Type) throws -> R? { try Self.member(message["result"], "result", as: type) }

    /// A member of a message as `T` (its coding path starts with `name`); nil when absent or null.
    static func member<T: Decodable>(_ value: JSONValue?, _ name: String, as type: T.Type) throws -> T? {
        guard let value, value != .null else { return nil }
        return try TreeDecoder.decode(type, from: value, at: [JSONKey(stringValue: name)])
    }
}

/// JSON coding shared by the RPC layer: compact lines.
enum RPCCoding {
    static func encodeLine<T: Encodable>(_ value: T) throws -> [UInt8] {
        var bytes = try JSONCoder.encode(value)
        bytes.append(10)
        return bytes
    }
}
