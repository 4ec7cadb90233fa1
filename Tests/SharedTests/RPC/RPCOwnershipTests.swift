import Glibc
import Synchronization
import Testing
@testable import Shared

enum GrantMethod: RPCMethod {
    typealias Params = Delay
    typealias Result = Text
    static let name = "test.grant"
}

/// What a server grants belongs to the caller's connection, and a caller that gives up never leaves
/// a grant behind: the RPC half of runner leases.
@Suite struct RPCOwnershipTests {
    @Test func aHandlerLearnsItsCallerAndTheServerReportsThatConnectionsEnd() async throws {
        try await withTemporaryDirectory { dir in
            let server = RPCServer(path: dir + "/s.sock")
            let seen = Mutex<[RPCCaller]>([])
            let ended = Mutex<[RPCCaller]>([])
            let gone = Gate()
            server.register(EchoMethod.self) { params, caller in
                seen.withLock { $0.append(caller) }
                return params
            }
            server.onDisconnect { caller in
                ended.withLock { $0.append(caller) }
                gone.open()
            }
            try server.start()
            let first = RPCClient(path: dir + "/s.sock")
            let second = RPCClient(path: dir + "/s.sock")
            first.start()
            second.start()
            _ = try await first.call(EchoMethod.self, Text(text: "a"))
            _ = try await first.call(EchoMethod.self, Text(text: "b"))
            _ = try await second.call(EchoMethod.self, Text(text: "c"))
            let callers = seen.withLock { $0 }
            #expect(callers.count == 3)
            #expect(callers[0] == callers[1], "one connection, one caller")
            #expect(callers[0] != callers[2], "each connection is its own caller")
            #expect(ended.withLock { $0 }.isEmpty)
            await first.close()
            await gone.wait()
            #expect(ended.withLock { $0 } == [callers[0]])
            await second.close()
            await server.stop()
        }
    }

    @Test func aCallCancelledBeforeItIsWrittenSendsNothing() async throws {
        try await withTemporaryDirectory { dir in
            let server = RPCServer(path: dir + "/s.sock")
            let calls = Atomic<Int>(0)
            server.register(EchoMethod.self) { params in
                calls.add(1, ordering: .relaxed)
                return params
            }
            try server.start()
            let client = RPCClient(path: dir + "/s.sock")
            client.start()
            _ = try await client.call(EchoMethod.self, Text(text: "warm"))
            let task = Task {
                withUnsafeCurrentTask { $0?.cancel() }
                return try await client.call(EchoMethod.self, Text(text: "never"))
            }
            await #expect(throws: CancellationError.self) { try await task.value }
            // A later call on the same connection arrives after anything the cancelled one sent.
            _ = try await client.call(EchoMethod.self, Text(text: "after"))
            #expect(calls.load(ordering: .relaxed) == 2, "the cancelled call must not reach the server")
            await client.close()
            await server.stop()
        }
    }

    @Test func aGrantThatArrivesAfterTheCallerGaveUpGoesToTheAbandonHandler() async throws {
        try await withTemporaryDirectory { dir in
            let server = RPCServer(path: dir + "/s.sock")
            // The handler ignores cancellation, like a grant that was already decided.
            server.register(GrantMethod.self) { p in
                // An unstructured task does not inherit the handler's cancellation.
                await Task { try? await EventLoop.shared.sleep(seconds: Double(p.ms) / 1000) }.value
                return Text(text: "lease-\(p.ms)")
            }
            try server.start()
            let client = RPCClient(path: dir + "/s.sock")
            client.start()
            let returned = Mutex<[String]>([])
            let late = Gate()
            await #expect(throws: RPCError.timedOut(method: GrantMethod.name, seconds: 0.05)) {
                try await client.call(GrantMethod.self, Delay(ms: 200), timeout: 0.05) { grant in
                    returned.withLock { $0.append(grant.text) }
                    late.open()
                }
            }
            await late.wait()
            #expect(returned.withLock { $0 } == ["lease-200"])
            // A reply that reaches its caller is the caller's: the abandon handler is not called.
            let kept = try await client.call(GrantMethod.self, Delay(ms: 1), timeout: 5) { grant in
                returned.withLock { $0.append("wrongly returned \(grant.text)") }
            }
            #expect(kept == Text(text: "lease-1"))
            try await EventLoop.shared.sleep(seconds: 0.05)
            #expect(returned.withLock { $0 } == ["lease-200"])
            await client.close()
            await server.stop()
        }
    }
}
