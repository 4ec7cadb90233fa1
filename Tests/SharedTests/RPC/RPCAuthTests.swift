import Glibc
import Synchronization
import Testing
@testable import Shared

/// The control plane on TCP: a call reaches a handler only over a connection that proved the shared
/// secret, and neither a wrong secret, a replayed answer, a client that skips the handshake nor a
/// server that cannot prove the secret gets anywhere. Real loopback sockets.
@Suite struct RPCAuthTests {
    static let secret = RPCSecret(Array("0123456789abcdef0123456789abcdef".utf8))

    /// A server on 127.0.0.1 (a free port) with `test.echo`, counting the calls that reached it.
    final class Counter: Sendable {
        let value = Mutex(0)
        func bump() { value.withLock { $0 += 1 } }
        var count: Int { value.withLock { $0 } }
    }

    static func server(_ dir: String, calls: Counter? = nil) throws -> (RPCServer, UInt16) {
        let server = RPCServer(path: dir + "/s.sock")
        server.register(EchoMethod.self) { p in
            calls?.bump()
            return Text(text: p.text)
        }
        try server.start()
        let port = try server.startTCP(.tcp(host: "127.0.0.1", port: 0), secret: secret)
        return (server, port)
    }

    /// A raw connection and its line reader, for speaking the handshake by hand.
    static func raw(_ port: UInt16) async throws -> (Connection, LineReader) {
        let c = try await Connection.connect(to: .tcp(host: "127.0.0.1", port: port), loop: .shared, deadline: deadline(after: 5))
        return (c, LineReader(connection: c, maxBytes: 4096))
    }

    static func json(_ line: LineReader.Line) -> JSONValue? {
        guard case .line(let bytes) = line else { return nil }
        return try? JSONParser.parse(bytes).0
    }

    @Test func theRightSecretServesCallsAndAWrongOneNeverConnects() async throws {
        try await withTemporaryDirectory { dir in
            let calls = Counter()
            let (server, port) = try Self.server(dir, calls: calls)
            let good = RPCClient(address: .tcp(host: "127.0.0.1", port: port), secret: Self.secret)
            good.start()
            #expect(try await good.call(EchoMethod.self, Text(text: "over tcp"), timeout: 10) == Text(text: "over tcp"))
            let wrong = RPCClient(address: .tcp(host: "127.0.0.1", port: port), secret: RPCSecret(Array("another secret, also 32 bytes..".utf8)))
            wrong.start()
            await #expect(throws: RPCError.timedOut(method: EchoMethod.name, seconds: 1)) {
                try await wrong.call(EchoMethod.self, Text(text: "let me in"), timeout: 1)
            }
            let until = deadline(after: 20)
            while wrong.connectFailure == nil && monotonicNanos() < until { try await EventLoop.shared.sleep(seconds: 0.02) }
            #expect(wrong.connectFailure?.containsText("wrong secret") == true, "\(wrong.connectFailure ?? "nil")")
            #expect(calls.count == 1)
            await wrong.close()
            await good.close()
            await server.stop()
        }
    }

    @Test func aClientThatSkipsTheHandshakeIsClosedUnserved() async throws {
        try await withTemporaryDirectory { dir in
            let calls = Counter()
            let (server, port) = try Self.server(dir, calls: calls)
            let (c, reader) = try await Self.raw(port)
            let hello = Self.json(try await reader.next(deadline: deadline(after: 5)))
            #expect(hello?["auth"]?.stringValue == "llama-runner-rpc-1" && hello?["challenge"]?.stringValue?.utf8.count == 64)
            try await c.write(Array("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"test.echo\",\"params\":{\"text\":\"x\"}}\n".utf8))
            let verdict = Self.json(try await reader.next(deadline: deadline(after: 5)))
            #expect(verdict?["error"]?.stringValue?.containsText("authentication failed") == true)
            let after = try await reader.next(deadline: deadline(after: 5))
            #expect(after.isEnd, "the server closed the connection")
            #expect(calls.count == 0)
            c.close()
            await server.stop()
        }
    }

    @Test func aRecordedAnswerDoesNotOpenAnotherConnection() async throws {
        try await withTemporaryDirectory { dir in
            let calls = Counter()
            let (server, port) = try Self.server(dir, calls: calls)
            // A legitimate handshake, recorded.
            let (first, firstReader) = try await Self.raw(port)
            let c1 = try #require(Self.json(try await firstReader.next(deadline: deadline(after: 5)))?["challenge"]?.stringValue)
            let nonce = RPCAuth.nonce()
            let answer = RPCAuth.line([("nonce", .string(nonce)), ("response", .string(RPCAuth.tag(Self.secret, "client", c1, nonce)))])
            try await first.write(answer)
            #expect(Self.json(try await firstReader.next(deadline: deadline(after: 5)))?["ok"]?.boolValue == true)
            // The same answer on a new connection: a new challenge, so it is wrong there.
            let (second, secondReader) = try await Self.raw(port)
            let c2 = try #require(Self.json(try await secondReader.next(deadline: deadline(after: 5)))?["challenge"]?.stringValue)
            #expect(c2 != c1)
            try await second.write(answer)
            #expect(Self.json(try await secondReader.next(deadline: deadline(after: 5)))?["error"]?.stringValue?.containsText("wrong secret") == true)
            #expect(try await secondReader.next(deadline: deadline(after: 5)).isEnd)
            #expect(calls.count == 0)
            first.close()
            second.close()
            await server.stop()
        }
    }

    @Test func aServerThatCannotProveTheSecretGetsNoCall() async throws {
        // An impostor that replays a real challenge's shape and says ok with a made-up proof.
        let listener = try Listener(.tcp(host: "127.0.0.1", port: 0), loop: .shared)
        let heard = Mutex<[String]>([])
        let impostor = Task {
            guard let c = try? await listener.accept() else { return }
            let reader = LineReader(connection: c, maxBytes: 1 << 20)
            try? await c.write(RPCAuth.line([("auth", .string("llama-runner-rpc-1")), ("challenge", .string(RPCAuth.nonce()))]))
            _ = try? await reader.next()
            try? await c.write(RPCAuth.line([("ok", .bool(true)), ("proof", .string(String(repeating: "0", count: 64)))]))
            while case .line(let bytes)? = try? await reader.next() { heard.withLock { $0.append(String(decoding: bytes, as: UTF8.self)) } }
        }
        let client = RPCClient(address: .tcp(host: "127.0.0.1", port: listener.port), secret: Self.secret)
        client.start()
        await #expect(throws: RPCError.timedOut(method: EchoMethod.name, seconds: 1)) {
            try await client.call(EchoMethod.self, Text(text: "secret data"), timeout: 1)
        }
        // (On a busy machine the impostor may not have answered within that second: wait for its verdict.)
        let until = deadline(after: 20)
        while client.connectFailure == nil && monotonicNanos() < until { try await EventLoop.shared.sleep(seconds: 0.02) }
        #expect(client.connectFailure?.containsText("could not prove") == true, "\(client.connectFailure ?? "nil")")
        #expect(heard.withLock { $0 }.isEmpty, "no call was sent to the impostor")
        await client.close()
        listener.close()
        impostor.cancel()
    }

    @Test func aSecretFileMustBeLongAndPrivate() async throws {
        try await withTemporaryDirectory { dir in
            let path = dir + "/secret"
            try AtomicFile.write(Array("0123456789abcdef0123456789abcdef\n".utf8), to: path, mode: 0o600)
            #expect(try RPCSecret.load(file: path) == Self.secret)
            chmod(path, 0o644)
            #expect(throws: ConfigError.self) { try RPCSecret.load(file: path) }
            try AtomicFile.write(Array("short\n".utf8), to: path, mode: 0o600)
            #expect(throws: ConfigError.self) { try RPCSecret.load(file: path) }
            #expect(throws: ConfigError.self) { try RPCSecret.load(file: dir + "/missing") }
        }
    }
}
