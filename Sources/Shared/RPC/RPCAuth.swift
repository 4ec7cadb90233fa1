import Glibc

/// The secret a control plane on TCP is guarded by, read from a file (`runner_host.secret_file` on
/// the host, `hosts.<name>.secret_file` on the gateway): its bytes without trailing white space.
public struct RPCSecret: Sendable, Equatable {
    let bytes: [UInt8]

    /// The fewest bytes a secret may have (128 bits of a random hex string is 32 characters).
    public static let minimumBytes = 16

    public init(_ bytes: [UInt8]) { self.bytes = bytes }

    /// Reads the secret; a missing, short, or world-readable file is refused with what to do.
    public static func load(file path: String) throws(ConfigError) -> RPCSecret {
        var info = stat()
        guard stat(path, &info) == 0, let raw = readFileBytes(path) else {
            throw ConfigError(file: path, message: "cannot read the shared secret file (create it with: head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n' > \(path); chmod 600 \(path))")
        }
        if info.st_mode & S_IROTH != 0 {
            throw ConfigError(file: path, message: "the shared secret file is readable by every user: chmod 600 \(path)")
        }
        var bytes = raw
        while let last = bytes.last, last == 10 || last == 13 || last == 32 || last == 9 { bytes.removeLast() }
        guard bytes.count >= minimumBytes else {
            throw ConfigError(file: path, message: "the shared secret is \(bytes.count) bytes; it needs at least \(minimumBytes) (e.g. 32 random hex characters)")
        }
        return RPCSecret(bytes)
    }
}

/// Why a TCP control connection was not authenticated.
public enum RPCAuthError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The other end does not hold the same secret (or is not a Llama Runner control plane).
    case refused(String)
    /// The handshake did not complete in time.
    case timedOut

    public var description: String {
        switch self {
        case .refused(let why): "control-plane authentication failed: \(why)"
        case .timedOut: "control-plane authentication timed out"
        }
    }
}

/// The handshake that opens a control-plane connection on TCP, before any JSON-RPC: a mutual HMAC
/// challenge over the shared secret, which itself never crosses the wire.
///
/// 1. server → `{"auth":"llama-runner-rpc-1","challenge":C}` (32 fresh random bytes, hex)
/// 2. client → `{"nonce":N,"response":HMAC(secret, "client C N")}` (its own fresh 32 bytes)
/// 3. server → `{"ok":true,"proof":HMAC(secret, "server N C")}`, or `{"error":…}` and it closes.
///
/// A recorded response is useless on another connection: each connection has a new challenge, so a
/// replay answers the wrong one. The client checks the server's proof over its own nonce, so an
/// impostor that relays or replays challenges learns nothing and is not sent a single call.
public enum RPCAuth {
    static let version = "llama-runner-rpc-1"
    /// The longest handshake line accepted.
    static let maxLineBytes = 1024
    /// How long the handshake may take.
    public static let timeoutSeconds = 5.0

    /// 32 bytes from the kernel's random source, hex (challenges, nonces, runner keys).
    public static func nonce() -> String {
        var rng = SystemRandomNumberGenerator()
        return SHA256.hex((0..<32).map { _ in UInt8.random(in: .min ... .max, using: &rng) })
    }

    static func tag(_ secret: RPCSecret, _ role: String, _ a: String, _ b: String) -> String {
        SHA256.hex(HMAC.sha256(key: secret.bytes, message: Array("\(version) \(role) \(a) \(b)".utf8)))
    }

    static func line(_ pairs: [(String, JSONValue)]) -> [UInt8] {
        JSONWriter.bytes(.object(JSONObject(pairs)), pretty: false) + [10]
    }

    static func read(_ reader: LineReader, until: UInt64) async throws -> JSONValue {
        let line: LineReader.Line
        do {
            line = try await reader.next(deadline: until)
        } catch EventLoopError.timedOut {
            throw RPCAuthError.timedOut
        }
        guard case .line(let bytes) = line, let doc = try? JSONParser.parse(bytes).0 else {
            throw RPCAuthError.refused(line.isEnd ? "the other end closed the connection" : "not a handshake message")
        }
        return doc
    }

    /// The server's side, on a new connection: true when the client proved the secret (then JSON-RPC
    /// follows on `reader`); false after telling it why not (the caller closes the connection).
    static func accept(_ connection: Connection, reader: LineReader, secret: RPCSecret, challenge: String = nonce()) async -> Result<Void, RPCAuthError> {
        let until = deadline(after: timeoutSeconds)
        do {
            try await connection.write(line([("auth", .string(version)), ("challenge", .string(challenge))]), deadline: until)
            let answer = try await read(reader, until: until)
            guard let nonce = answer["nonce"]?.stringValue, nonce.utf8.count == 64, let response = answer["response"]?.stringValue else {
                throw RPCAuthError.refused("the client did not answer the challenge")
            }
            guard HMAC.constantTimeEqual(Array(response.utf8), Array(tag(secret, "client", challenge, nonce).utf8)) else {
                throw RPCAuthError.refused("wrong secret")
            }
            try await connection.write(line([("ok", .bool(true)), ("proof", .string(tag(secret, "server", nonce, challenge)))]), deadline: until)
            return .success(())
        } catch let error as RPCAuthError {
            if case .refused(let why) = error {
                _ = try? await connection.write(line([("error", .string("authentication failed: \(why)"))]), deadline: until)
            }
            return .failure(error)
        } catch {
            return .failure(.refused("\(error)"))
        }
    }

    /// The client's side, right after connecting; throws `RPCAuthError` unless the server proved the
    /// secret too.
    static func prove(_ connection: Connection, reader: LineReader, secret: RPCSecret) async throws {
        let until = deadline(after: timeoutSeconds)
        let hello = try await read(reader, until: until)
        guard hello["auth"]?.stringValue == version, let challenge = hello["challenge"]?.stringValue, challenge.utf8.count == 64 else {
            throw RPCAuthError.refused("the server did not send a \(version) challenge")
        }
        let nonce = nonce()
        try await connection.write(line([("nonce", .string(nonce)), ("response", .string(tag(secret, "client", challenge, nonce)))]), deadline: until)
        let verdict = try await read(reader, until: until)
        if let error = verdict["error"]?.stringValue { throw RPCAuthError.refused("the server says: \(error)") }
        guard verdict["ok"]?.boolValue == true, let proof = verdict["proof"]?.stringValue,
              HMAC.constantTimeEqual(Array(proof.utf8), Array(tag(secret, "server", nonce, challenge).utf8)) else {
            throw RPCAuthError.refused("the server could not prove the secret")
        }
    }
}

extension LineReader.Line {
    var isEnd: Bool { if case .end = self { true } else { false } }
}
