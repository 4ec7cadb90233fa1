import Shared

/// The wire shape of errors on a surface: OpenAI/LM Studio `{"error":{message,type,param,code}}`,
/// Ollama `{"error":"…"}`, or LM Studio's REST v1 `{"error":{type,message,code?,param?}}` with its own
/// error types (`invalid_request`, `model_not_found`, `not_implemented`, `internal_error`, …).
enum ErrorShape: Sendable {
    case openAI, ollama, lmstudioV1

    /// An error response before any byte was sent.
    func response(_ status: HTTPStatus, _ message: String, type: String? = nil, param: String? = nil, code: String? = nil,
                  headers extra: HTTPHeaders = HTTPHeaders()) -> HTTPResponse {
        var response = HTTPResponse.json(body(status, message, type: type, param: param, code: code), status: status)
        for (n, v) in extra { response.headers.add(n, v) }
        // openai-python retries 5xx twice: a failure that will not change must say so.
        if status.code >= 500 && self == .openAI { response.headers.add("x-should-retry", "false") }
        return response
    }

    func body(_ status: HTTPStatus, _ message: String, type: String? = nil, param: String? = nil, code: String? = nil) -> [UInt8] {
        switch self {
        case .ollama:
            return JSONWriter.bytes(.object(JSONObject([("error", .string(message))])), pretty: false)
        case .lmstudioV1:
            var error = JSONObject([("type", .string(type ?? Self.lmstudioType(status))), ("message", .string(message))])
            if let code { error["code"] = .string(code) }
            if let param { error["param"] = .string(param) }
            return JSONWriter.bytes(.object(JSONObject([("error", .object(error))])), pretty: false)
        case .openAI:
            let t = type ?? Self.openAIType(status)
            let error = JSONObject([("message", .string(message)), ("type", .string(t)),
                                    ("param", param.map(JSONValue.string) ?? .null), ("code", code.map(JSONValue.string) ?? .null)])
            return JSONWriter.bytes(.object(JSONObject([("error", .object(error))])), pretty: false)
        }
    }

    /// The error line that ends a stream already under way.
    func streamError(_ message: String) -> [UInt8] {
        switch self {
        case .ollama: return body(.internalServerError, message) + [10]
        case .lmstudioV1:
            let error = JSONObject([("type", .string("internal_error")), ("message", .string(message))])
            return SSEEvent(event: "error", data: JSONWriter.write(.object(JSONObject([("type", .string("error")), ("error", .object(error))])), pretty: false)).encoded()
        case .openAI: return Array("data: ".utf8) + body(.internalServerError, message, type: "server_error") + Array("\n\n".utf8)
        }
    }

    /// LM Studio REST v1's error types.
    static func lmstudioType(_ status: HTTPStatus) -> String {
        switch status.code {
        case 400, 401, 403, 405, 413, 415, 422: "invalid_request"
        case 404: "model_not_found"
        case 501: "not_implemented"
        default: status.code >= 500 ? "internal_error" : "unknown"
        }
    }

    static func openAIType(_ status: HTTPStatus) -> String {
        switch status.code {
        case 400, 413, 422: "invalid_request_error"
        case 401: "authentication_error"
        case 403: "permission_error"
        case 404: "not_found_error"
        case 429: "rate_limit_error"
        case 501: "not_supported_error"
        case 503: "unavailable_error"
        default: status.code >= 500 ? "server_error" : "invalid_request_error"
        }
    }
}

/// An error that knows how it is answered: status, message, and OpenAI's `param` and `code`. Handlers
/// throw these instead of building error responses, and `SurfaceGuard` renders every one in the shape
/// of the surface the request came to (`ErrorShape` for its path), so one place writes error answers
/// and no thrown error reaches a client as plain text.
protocol HTTPResponseError: Error {
    var status: HTTPStatus { get }
    var message: String { get }
    var param: String? { get }
    var code: String? { get }
    /// Extra headers of the answer (`Retry-After`, `Connection: close`).
    var headers: HTTPHeaders { get }
}

extension HTTPResponseError {
    var param: String? { nil }
    var code: String? { nil }
    var headers: HTTPHeaders { HTTPHeaders() }

    /// The answer in `shape`.
    func response(in shape: ErrorShape) -> HTTPResponse {
        shape.response(status, message, param: param, code: code, headers: headers)
    }
}

/// The gateway's own errors.
struct APIError: HTTPResponseError, Sendable {
    let status: HTTPStatus
    let message: String
    var param: String?
    var code: String?
    var headers = HTTPHeaders()

    init(_ status: HTTPStatus, _ message: String, param: String? = nil, code: String? = nil, headers: HTTPHeaders = HTTPHeaders()) {
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers
    }

    static func badRequest(_ message: String, param: String? = nil) -> APIError { APIError(.badRequest, message, param: param) }

    /// A fault while reading the request (413, 408, a bad chunk): its status, and the connection closed
    /// when the server would close it.
    init(_ error: HTTPError) {
        self.init(error.status, error.message, headers: error.closesConnection ? ["Connection": "close"] : HTTPHeaders())
    }
}

extension BadRequest: HTTPResponseError {
    var status: HTTPStatus { .badRequest }
}
