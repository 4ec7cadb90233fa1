import Shared

/// The wire shape of errors on a surface: OpenAI/LM Studio `{"error":{message,type,param,code}}`,
/// or Ollama `{"error":"…"}`.
enum ErrorShape: Sendable {
    case openAI, ollama

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
        case .openAI: return Array("data: ".utf8) + body(.internalServerError, message, type: "server_error") + Array("\n\n".utf8)
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
