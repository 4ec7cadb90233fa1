/// The server side of the opening handshake (RFC 6455 §4.2).
public enum WebSocketHandshake {
    /// The GUID the accept value is computed with (§1.3).
    static let guid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    /// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`: base64(SHA-1(key + GUID)) (§4.2.2).
    public static func accept(key: String) -> String {
        Base64.encode(SHA1.digest(Array((key + guid).utf8)))
    }

    /// Whether the request asks for a WebSocket (`Upgrade: websocket`): such a request to a path that
    /// serves none is refused rather than answered as plain HTTP.
    public static func isUpgradeRequest(_ head: HTTPRequestHead) -> Bool {
        head.headers.containsToken("upgrade", "websocket")
    }

    /// Checks an opening handshake (§4.2.1) and returns the key to accept, or the HTTP error to
    /// answer: 400 for a malformed one, 426 with `Sec-WebSocket-Version: 13` for another version.
    public static func check(_ head: HTTPRequestHead) -> Swift.Result<String, HTTPError> {
        func bad(_ message: String) -> Swift.Result<String, HTTPError> { .failure(HTTPError(.badRequest, message)) }
        guard head.method == "GET" else { return bad("a WebSocket handshake must be a GET request") }
        guard head.version == .http1_1 else { return bad("a WebSocket handshake needs HTTP/1.1") }
        guard head.framing == .none || head.framing == .length(0) else { return bad("a WebSocket handshake has no request body") }
        guard head.headers.containsToken("upgrade", "websocket") else {
            return .failure(HTTPError(.upgradeRequired, "this endpoint speaks only WebSocket: send Upgrade: websocket"))
        }
        guard head.headers.containsToken("connection", "upgrade") else { return bad("a WebSocket handshake needs Connection: Upgrade") }
        let versions = head.headers.values("sec-websocket-version")
        guard versions.count == 1, versions[0].trimmingSpaces() == "13" else {
            return .failure(HTTPError(.upgradeRequired, "unsupported Sec-WebSocket-Version: this server speaks version 13"))
        }
        let keys = head.headers.values("sec-websocket-key")
        guard keys.count == 1, let decoded = Base64.decode(keys[0].trimmingSpaces()), decoded.count == 16 else {
            return bad("Sec-WebSocket-Key must be one base64-encoded 16-byte value")
        }
        return .success(String(keys[0].trimmingSpaces()))
    }

    /// The 101 response that completes the handshake and hands the connection to `session`, or the
    /// error response when the handshake is invalid. No subprotocol or extension is negotiated.
    public static func response(to request: HTTPRequest, configuration: WebSocket.Configuration = WebSocket.Configuration(),
                                session: @escaping @Sendable (WebSocket) async -> Void) -> HTTPResponse {
        switch check(request.head) {
        case .failure(let error):
            var r = HTTPResponse.text(error.message + "\n", status: error.status)
            if error.status == .upgradeRequired {
                r.headers.set("Sec-WebSocket-Version", "13")
                r.headers.set("Upgrade", "websocket")
            }
            return r
        case .success(let key):
            let headers: HTTPHeaders = ["Upgrade": "websocket", "Sec-WebSocket-Accept": accept(key: key)]
            return HTTPResponse(status: .switchingProtocols, headers: headers, body: .upgrade { upgraded in
                let socket = WebSocket(upgraded, configuration: configuration)
                await session(socket)
                await socket.finish()
            })
        }
    }
}
