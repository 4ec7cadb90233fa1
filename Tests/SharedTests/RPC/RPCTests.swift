import FoundationEssentials
import Glibc
import Synchronization
import Testing
@testable import Shared

struct Text: Codable, Sendable, Equatable { var text: String }
struct Delay: Codable, Sendable { var ms: Int }

enum EchoMethod: RPCMethod {
    typealias Params = Text
    typealias Result = Text
    static let name = "test.echo"
}

enum SlowMethod: RPCMethod {
    typealias Params = Delay
    typealias Result = Empty
    static let name = "test.slow"
}

enum FailMethod: RPCMethod {
    typealias Params = Empty
    typealias Result = Empty
    static let name = "test.fail"
}

enum TickNotification: RPCNotification {
    typealias Params = Text
    static let name = "test.tick"
}

/// JSON-RPC over a real Unix socket.
@Suite struct RPCTests {
    static func makeServer(_ path: String) throws -> RPCServer {
        let server = RPCServer(path: path)
        server.register(EchoMethod.self) { Text(text: $0.text) }
        server.register(SlowMethod.self) { p in
            try await EventLoop.shared.sleep(seconds: Double(p.ms) / 1000)
            return Empty()
        }
        server.register(FailMethod.self) { _ in throw RPCFault(code: RPCFault.conflictCode, message: "stale revision", data: ["current": "7"]) }
        try server.start()
        return server
    }

    @Test func roundTripErrorsAndTimeouts() async throws {
        try await withTemporaryDirectory { dir in
            let server = try Self.makeServer(dir + "/s.sock")
            let client = RPCClient(path: dir + "/s.sock")
            client.start()
            #expect(try await client.call(EchoMethod.self, Text(text: "hi")) == Text(text: "hi"))
            await #expect(throws: RPCError.remote(RPCFault(code: RPCFault.conflictCode, message: "stale revision", data: ["current": "7"]))) {
                try await client.call(FailMethod.self, Empty())
            }
            await #expect(throws: RPCError.timedOut(method: SlowMethod.name, seconds: 0.1)) {
                try await client.call(SlowMethod.self, Delay(ms: 2000), timeout: 0.1)
            }
            // The connection is still good after a timeout.
            #expect(try await client.call(EchoMethod.self, Text(text: "again")) == Text(text: "again"))
            await client.close()
            await server.stop()
        }
    }

    @Test func thousandConcurrentCallsOnOneConnectionAreAllMatched() async throws {
        try await withTemporaryDirectory { dir in
            let server = try Self.makeServer(dir + "/s.sock")
            let client = RPCClient(path: dir + "/s.sock", defaultTimeout: 30)
            client.start()
            let results = try await withThrowingTaskGroup(of: (Int, String).self) { group in
                for i in 0..<1000 {
                    group.addTask {
                        // Build the tuple after the await (swiftlang/swift#91911; see ServiceHealth.probe).
                        let text = try await client.call(EchoMethod.self, Text(text: "call-\(i)")).text
                        return (i, text)
                    }
                }
                var all: [(Int, String)] = []
                for try await r in group { all.append(r) }
                return all
            }
            #expect(results.count == 1000)
            #expect(results.allSatisfy { "call-\($0.0)" == $0.1 })
            await client.close()
            await server.stop()
        }
    }

    /// Raw lines over a socket, to send what no typed client would.
    func rawExchange(_ path: String, _ lines: [[UInt8]], expect count: Int) async throws -> [[String: Any]] {
        let c = try await Connection.connect(to: .unix(path: path), loop: .shared)
        for line in lines { try await c.write(line) }
        let reader = LineReader(connection: c, maxBytes: 1 << 20)
        var replies: [[String: Any]] = []
        while replies.count < count {
            guard case .line(let bytes) = try await reader.next() else { break }
            replies.append(try JSONDecoder().decode(AnyJSON.self, from: Data(bytes)).object)
        }
        c.close()
        return replies
    }

    @Test func malformedAndOversizedMessagesGetErrorsAndTheConnectionStaysUsable() async throws {
        try await withTemporaryDirectory { dir in
            let path = dir + "/s.sock"
            let server = try Self.makeServer(path)
            let oversized = [UInt8](repeating: UInt8(ascii: "a"), count: (16 << 20) + 10) + [10]
            let replies = try await rawExchange(path, [
                Array("{not json\n".utf8),
                Array("[1,2]\n".utf8),
                Array("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"nope\"}\n".utf8),
                Array("{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"test.echo\",\"params\":{\"text\":5}}\n".utf8),
                oversized,
                Array("{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"test.echo\",\"params\":{\"text\":\"ok\"}}\n".utf8),
            ], expect: 6)
            let codes = replies.map { ($0["error"] as? [String: Any])?["code"] as? Int }
            #expect(codes == [-32700, -32600, -32601, -32602, -32600, nil])
            let message = (replies[3]["error"] as? [String: Any])?["message"] as? String
            #expect(message == "test.echo: params.text: expected a string")
            #expect((replies[5]["result"] as? [String: Any])?["text"] as? String == "ok")
            await server.stop()
        }
    }

    @Test func clientReconnectsAfterAServerRestartAndWaitsDuringTheOutage() async throws {
        try await withTemporaryDirectory { dir in
            let path = dir + "/s.sock"
            var server = try Self.makeServer(path)
            let client = RPCClient(path: path, defaultTimeout: 5, minBackoff: 0.01, maxBackoff: 0.1)
            client.start()
            let ticks = Mutex<[String]>([])
            client.onNotification { method, data in
                if method == TickNotification.name, let p = RPCClient.decode(TickNotification.self, from: data) {
                    ticks.withLock { $0.append(p.text) }
                }
            }
            client.subscribe()
            #expect(try await client.call(EchoMethod.self, Text(text: "before")).text == "before")
            server.notify(TickNotification.self, Text(text: "t1"))

            // A call in flight when the server goes away fails as lost, not as a hang.
            let inFlight = Task { try await client.call(SlowMethod.self, Delay(ms: 3000)) }
            try await EventLoop.shared.sleep(seconds: 0.1)
            await server.stop()
            await #expect(throws: RPCError.connectionLost(method: SlowMethod.name)) { try await inFlight.value }

            // A call made during the outage waits for the new server.
            let during = Task { try await client.call(EchoMethod.self, Text(text: "during")) }
            try await EventLoop.shared.sleep(seconds: 0.3)
            server = try Self.makeServer(path)
            #expect(try await during.value.text == "during")
            #expect(try await client.call(EchoMethod.self, Text(text: "after")).text == "after")

            // The subscription was renewed on reconnect.
            let until = deadline(after: 3)
            while server.subscriberCount == 0 && monotonicNanos() < until { try await EventLoop.shared.sleep(seconds: 0.01) }
            server.notify(TickNotification.self, Text(text: "t2"))
            while ticks.withLock({ $0.count }) < 2 && monotonicNanos() < until { try await EventLoop.shared.sleep(seconds: 0.01) }
            #expect(ticks.withLock { $0 } == ["t1", "t2"])
            await client.close()
            await server.stop()
        }
    }

    /// A deadline that has passed by the time the call is made (a slow connect, a loaded machine) fires
    /// at once, on the loop thread, racing the caller: every such call must time out, none may wait for
    /// the reply. (The race this guards, a timer scheduled before its call was pending and so finding
    /// nothing, needs the caller preempted inside a few instructions: seen once in a loaded full run,
    /// not reproduced by this test on the old code. The test checks the behaviour, the comment in
    /// `RPCClient.call` the reason for the order.)
    @Test func aDeadlineAlreadyPastStillTimesTheCallOut() async throws {
        try await withTemporaryDirectory { dir in
            let path = dir + "/s.sock"
            let server = RPCServer(path: path)
            server.register(SlowMethod.self) { p in
                try await EventLoop.shared.sleep(seconds: Double(p.ms) / 1000)
                return Empty()
            }
            try server.start()
            let client = RPCClient(path: path)
            client.start()
            _ = try? await client.call(SlowMethod.self, Delay(ms: 0), timeout: 5)  // connected
            // Keep the loop thread turning, so due timers fire while the callers are mid-registration.
            let busy = Task(executorPreference: EventLoop.shared) {
                while !Task.isCancelled { await Task.yield() }
            }
            defer { busy.cancel() }
            let outcomes = await withTaskGroup(of: Bool.self) { group -> [Bool] in
                for _ in 0..<400 {
                    group.addTask {
                        do { _ = try await client.call(SlowMethod.self, Delay(ms: 2000), timeout: 0.000_001); return false } catch { return true }
                    }
                }
                return await group.reduce(into: []) { $0.append($1) }
            }
            #expect(outcomes.filter { !$0 }.count == 0, "calls that waited out a deadline already past")
            await client.close()
            await server.stop()
        }
    }

    @Test func aCallerThatGivesUpCancelsTheServersHandler() async throws {
        try await withTemporaryDirectory { dir in
            let path = dir + "/s.sock"
            let outcomes = Mutex<[String]>([])
            let started = Mutex<Set<Int>>([])
            let server = RPCServer(path: path)
            server.register(SlowMethod.self) { p in
                started.withLock { _ = $0.insert(p.ms) }
                do {
                    try await EventLoop.shared.sleep(seconds: Double(p.ms) / 1000)
                    outcomes.withLock { $0.append("finished \(p.ms)") }
                } catch {
                    outcomes.withLock { $0.append("cancelled \(p.ms)") }
                    throw error
                }
                return Empty()
            }
            try server.start()
            // A timeout on the client cancels the handler (rpc.cancel).
            let client = RPCClient(path: path)
            client.start()
            await #expect(throws: RPCError.self) { try await client.call(SlowMethod.self, Delay(ms: 5000), timeout: 0.2) }
            // So does a dropped connection.
            let other = RPCClient(path: path)
            other.start()
            let pending = Task { try await other.call(SlowMethod.self, Delay(ms: 6000)) }
            // Dropped only once the server runs the call: a fixed pause raced a busy machine, where the
            // connection could close before the call had even been sent.
            let running = deadline(after: 10)
            while !started.withLock({ $0.contains(6000) }) && monotonicNanos() < running { try await EventLoop.shared.sleep(seconds: 0.01) }
            await other.close()
            _ = await pending.result
            let until = deadline(after: 3)
            while outcomes.withLock({ $0.count }) < 2 && monotonicNanos() < until { try await EventLoop.shared.sleep(seconds: 0.01) }
            #expect(Set(outcomes.withLock { $0 }) == ["cancelled 5000", "cancelled 6000"])
            await client.close()
            await server.stop()
        }
    }

    @Test func aCallWithNoServerTimesOut() async throws {
        try await withTemporaryDirectory { dir in
            let client = RPCClient(path: dir + "/none.sock")
            client.start()
            await #expect(throws: RPCError.timedOut(method: EchoMethod.name, seconds: 0.2)) {
                try await client.call(EchoMethod.self, Text(text: "x"), timeout: 0.2)
            }
            await client.close()
        }
    }
}

/// Decodes arbitrary JSON for assertions on raw replies.
struct AnyJSON: Decodable {
    let value: Any
    var object: [String: Any] { value as? [String: Any] ?? [:] }

    struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    init(from decoder: any Decoder) throws {
        if let c = try? decoder.container(keyedBy: Key.self) {
            var dict: [String: Any] = [:]
            for k in c.allKeys { dict[k.stringValue] = try c.decode(AnyJSON.self, forKey: k).value }
            value = dict
        } else if var c = try? decoder.unkeyedContainer() {
            var items: [Any] = []
            while !c.isAtEnd { items.append(try c.decode(AnyJSON.self).value) }
            value = items
        } else {
            let c = try decoder.singleValueContainer()
            if c.decodeNil() { value = NSNullMarker() }
            else if let b = try? c.decode(Bool.self) { value = b }
            else if let i = try? c.decode(Int.self) { value = i }
            else if let d = try? c.decode(Double.self) { value = d }
            else { value = try c.decode(String.self) }
        }
    }
}

struct NSNullMarker {}
