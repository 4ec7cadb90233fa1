import Shared

/// A request field that cannot be used; its message goes back to the client as a 400.
struct BadRequest: Error, ExpressibleByStringInterpolation {
    let message: String
    init(stringLiteral value: String) { message = value }
}

/// Ollama request fields → llama-server (`options`, `keep_alive`, `format`, messages with images and tool calls).
enum OllamaTranslation {
    /// `keep_alive`: seconds (number), a Go duration ("5m", "1h30m", "-1m", "300ms"), or a bare numeric
    /// string (accepted as seconds). Negative = forever, 0 = unload when idle.
    static func keepAlive(_ value: JSONValue?) -> Result<Double?, BadRequest> {
        guard let value, !value.isNull else { return .success(nil) }
        if let d = value.doubleValue { return .success(d) }
        guard let text = value.stringValue else { return .failure("keep_alive: expected a number of seconds or a duration such as \"5m\"") }
        if let d = Double(text) { return .success(d) }
        var rest = Substring(text)
        var sign = 1.0
        if rest.hasPrefix("-") {
            sign = -1
            rest = rest.dropFirst()
        }
        var total = 0.0
        while !rest.isEmpty {
            let number = rest.prefix { $0.isNumber || $0 == "." }
            guard let n = Double(number), !number.isEmpty else { return .failure("keep_alive: invalid duration \"\(text)\"") }
            rest = rest.dropFirst(number.count)
            let unit = rest.prefix { $0.isLetter || $0 == "µ" }
            rest = rest.dropFirst(unit.count)
            let scale: Double
            switch unit {
            case "h": scale = 3600
            case "m": scale = 60
            case "s": scale = 1
            case "ms": scale = 0.001
            case "us", "µs": scale = 1e-6
            case "ns": scale = 1e-9
            default: return .failure("keep_alive: invalid duration \"\(text)\" (units: h, m, s, ms)")
            }
            total += n * scale
        }
        return .success(sign * total)
    }

    /// Per-request sampling options and load-time options (which pick the runner).
    static func options(_ options: JSONValue?) -> Result<(request: JSONObject, load: JSONObject), BadRequest> {
        var request = JSONObject()
        var load = JSONObject()
        guard let object = options?.objectValue else {
            if let options, !options.isNull { return .failure("options: expected an object") }
            return .success((request, load))
        }
        for (key, value) in object.entries {
            if let option = OllamaOptions.option(key), let field = option.requestField {
                guard let d = value.doubleValue else { return .failure("option \"\(key)\" must be of type \(option.kind == .integer ? "integer" : "float32")") }
                if key == "num_predict" && d < 0 { continue }
                request[field] = option.kind == .integer ? .int(Int(d)) : .double(d)
            } else if key == "stop" {
                guard let stops = value.arrayValue, stops.allSatisfy({ $0.stringValue != nil }) else { return .failure("option \"stop\" must be of type array") }
                request["stop"] = value
            } else if let option = OllamaOptions.option(key) {
                guard let i = value.intValue else { return .failure("option \"\(key)\" must be of type integer") }
                if key == "num_gpu" && i < 0 { continue }
                load[option.parameter] = .int(i)
            } else if key == "use_mmap" {
                guard let b = value.boolValue else { return .failure("option \"use_mmap\" must be of type boolean") }
                if !b { load["no_mmap"] = .bool(true) }
            }
            // Unknown options are ignored, as Ollama does.
        }
        return .success((request, load))
    }

    /// Ollama chat messages → OpenAI messages (images as data URLs, tool-call arguments as strings).
    static func messages(_ value: JSONValue?) -> Result<[JSONValue], BadRequest> {
        guard let list = value?.arrayValue else {
            if value == nil || value!.isNull { return .success([]) }
            return .failure("messages: expected an array")
        }
        var out: [JSONValue] = []
        for (i, m) in list.enumerated() {
            guard let o = m.objectValue, let role = o["role"]?.stringValue else { return .failure("messages[\(i)]: role is required") }
            var msg = JSONObject([("role", .string(role.lowercased()))])
            let text = o["content"]?.stringValue ?? ""
            if let images = o["images"]?.arrayValue, !images.isEmpty {
                var parts: [JSONValue] = [.object(JSONObject([("type", .string("text")), ("text", .string(text))]))]
                for image in images {
                    guard let b64 = image.stringValue else { return .failure("messages[\(i)].images: expected base64 strings") }
                    parts.append(.object(JSONObject([("type", .string("image_url")),
                                                     ("image_url", .object(JSONObject([("url", .string("data:\(mime(b64));base64,\(b64)"))])))])))
                }
                msg["content"] = .array(parts)
            } else {
                msg["content"] = .string(text)
            }
            if let calls = o["tool_calls"]?.arrayValue {
                msg["tool_calls"] = .array(calls.enumerated().map { n, call in
                    let f = call["function"] ?? .null
                    let args = f["arguments"].map { $0.stringValue ?? JSONWriter.write($0, pretty: false) } ?? "{}"
                    return .object(JSONObject([("id", .string(call["id"]?.stringValue ?? "call_\(n)")), ("type", .string("function")),
                                               ("function", .object(JSONObject([("name", f["name"] ?? .string("")), ("arguments", .string(args))])))]))
                })
            }
            if let name = o["tool_name"] { msg["name"] = name }
            if let id = o["tool_call_id"] { msg["tool_call_id"] = id }
            out.append(.object(msg))
        }
        return .success(out)
    }

    static func mime(_ b64: String) -> String {
        if b64.hasPrefix("iVBOR") { return "image/png" }
        if b64.hasPrefix("R0lG") { return "image/gif" }
        return "image/jpeg"
    }

    /// `format` ("json" or a JSON schema) → `response_format`.
    static func responseFormat(_ format: JSONValue?) -> Result<JSONValue?, BadRequest> {
        guard let format, !format.isNull else { return .success(nil) }
        if format.stringValue == "json" { return .success(.object(JSONObject([("type", .string("json_object"))]))) }
        if format.stringValue == "" { return .success(nil) }
        if let schema = format.objectValue {
            return .success(.object(JSONObject([("type", .string("json_schema")),
                                                ("json_schema", .object(JSONObject([("name", .string("schema")), ("schema", .object(schema))])))])))
        }
        return .failure("invalid format: expected \"json\" or a JSON schema object")
    }

    /// Whether an OpenAI message carries an image part (`image_url`, or Anthropic's `image`).
    static func hasImage(_ message: JSONValue) -> Bool {
        message["content"]?.arrayValue?.contains { part in
            let type = part["type"]?.stringValue
            return type == "image_url" || type == "image" || type == "input_image"
        } ?? false
    }
}
