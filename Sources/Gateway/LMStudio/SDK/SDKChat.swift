import Shared

/// LM Studio's chat history (`{"messages":[{"role","content":[part…]}]}`) as llama-server's OpenAI
/// messages: text parts joined, an assistant's `toolCallRequest` parts as `tool_calls` (arguments as a
/// JSON string), a tool message's `toolCallResult` parts as one `tool` message each.
enum SDKChat {
    static func messages(_ history: JSONValue?) throws(SDKError) -> [JSONValue] {
        guard let list = history?["messages"]?.arrayValue else { throw SDKError.invalidParameter("history needs messages, an array") }
        var out: [JSONValue] = []
        for (i, message) in list.enumerated() {
            guard let role = message["role"]?.stringValue, ["system", "user", "assistant", "tool"].contains(role) else {
                throw SDKError.invalidParameter("history.messages[\(i)].role: expected system, user, assistant or tool")
            }
            let parts: [JSONValue]
            switch message["content"] {
            case .string(let s)?: parts = [.object(JSONObject([("type", .string("text")), ("text", .string(s))]))]
            case .array(let a)?: parts = a
            default: throw SDKError.invalidParameter("history.messages[\(i)].content: expected an array of parts")
            }
            var text = ""
            var calls: [JSONValue] = []
            for (j, part) in parts.enumerated() {
                let place = "history.messages[\(i)].content[\(j)]"
                switch part["type"]?.stringValue {
                case "text"?:
                    guard let t = part["text"]?.stringValue else { throw SDKError.invalidParameter("\(place).text: expected a string") }
                    text += t
                case "toolCallRequest"?:
                    let request = part["toolCallRequest"] ?? .null
                    guard let name = request["name"]?.stringValue else { throw SDKError.invalidParameter("\(place).toolCallRequest.name: expected a string") }
                    let arguments = request["arguments"].map { JSONWriter.write($0, pretty: false) } ?? "{}"
                    calls.append(.object(JSONObject([
                        ("id", .string(request["id"]?.stringValue ?? "call_\(i)_\(j)")), ("type", .string("function")),
                        ("function", .object(JSONObject([("name", .string(name)), ("arguments", .string(arguments))]))),
                    ])))
                case "toolCallResult"?:
                    guard let content = part["content"]?.stringValue else { throw SDKError.invalidParameter("\(place).content: expected a string") }
                    var m = JSONObject([("role", .string("tool")), ("content", .string(content))])
                    if let id = part["toolCallId"]?.stringValue { m["tool_call_id"] = .string(id) }
                    out.append(.object(m))
                case "file"?:
                    throw SDKError(title: "Files in chats are not supported by Llama Runner yet", cause: "\(place) is a file (\(part["fileType"]?.stringValue ?? "unknown type"))",
                                   suggestion: "Send images through the OpenAI API (/v1/chat/completions with image_url parts) to a model with an mmproj")
                case let other:
                    throw SDKError.invalidParameter("\(place).type: unknown part type \(other.map { "\"\($0)\"" } ?? "(missing)")")
                }
            }
            if role == "tool" { continue }
            var m = JSONObject([("role", .string(role)), ("content", .string(text))])
            if !calls.isEmpty { m["tool_calls"] = .array(calls) }
            out.append(.object(m))
        }
        return out
    }

    /// The text of every message, concatenated: the prompt of a raw completion.
    static func concatenated(_ messages: [JSONValue]) -> String {
        messages.compactMap { $0["content"]?.stringValue }.joined()
    }

    /// Chat request fields as llama-server's native `/completion` names them.
    static func completionFields(_ sampling: JSONObject) -> JSONObject {
        var o = JSONObject()
        for (k, v) in sampling.entries {
            switch k {
            case "max_tokens": o["n_predict"] = v
            case "response_format": if let schema = v["json_schema"]?["schema"] { o["json_schema"] = schema }
            case "tools": break
            default: o[k] = v
            }
        }
        return o
    }
}
