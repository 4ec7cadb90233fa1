import FoundationEssentials

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

/// The routing fields of any incoming message; the payload is decoded again with its real type.
struct RPCIncoming: Decodable {
    let jsonrpc: String?
    let id: RPCID?
    let method: String?
    let error: RPCFault?
}

struct RPCParamsIn<P: Decodable>: Decodable {
    let params: P?
}

struct RPCResultIn<R: Decodable>: Decodable {
    let result: R
}

/// A reply decoded in one pass: its error, or its result.
struct RPCReplyIn<R: Decodable>: Decodable {
    let error: RPCFault?
    let result: R?
}

/// JSON coding shared by the RPC layer: compact output. One encoder and decoder are shared (they are
/// thread-safe in swift-foundation): building them per message was a measurable part of an RPC.
enum RPCCoding {
    nonisolated(unsafe) static let sharedEncoder: JSONEncoder = {
        let e = JSONEncoder()
        e.outputFormatting = [.withoutEscapingSlashes]
        return e
    }()
    nonisolated(unsafe) static let decoder = JSONDecoder()

    static func encoder() -> JSONEncoder { sharedEncoder }

    static func encodeLine<T: Encodable>(_ value: T) throws -> [UInt8] {
        var bytes = [UInt8](try sharedEncoder.encode(value))
        bytes.append(10)
        return bytes
    }
}
