import Glibc
import Synchronization
import Testing
@testable import Shared

/// The edge-triggered reactor: edges are never lost, never delivered to the wrong descriptor, and a
/// closed descriptor's waiter always hears of it.
@Suite struct EventLoopTests {
    /// Hands a connection to a task on the loop (each connection is used by one task at a time).
    struct Handed: @unchecked Sendable { let connection: Connection }

    /// A connected pair of Unix stream sockets, both adopted by `loop` as `Connection`s.
    static func pair(_ loop: EventLoop = .shared) -> (Connection, Connection) {
        var fds: [Int32] = [-1, -1]
        precondition(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0)
        return (Connection(fd: fds[0], loop: loop, isTCP: false), Connection(fd: fds[1], loop: loop, isTCP: false))
    }

    /// Many connections at once, each sent bursts larger than one read takes (so reads are partial
    /// and an edge consumed by a read that left bytes behind would hang it), read sometimes with
    /// `waitFirst`. A lost edge shows as a read that times out.
    @Test func noEdgeIsLostUnderConcurrentPartialReads() async throws {
        let loop = EventLoop.shared
        let pairs = (0..<48).map { _ in Self.pair(loop) }
        let (total, timeouts) = try await withThrowingTaskGroup(of: (Int, Int).self) { group -> (Int, Int) in
            for (index, (a, b)) in pairs.enumerated() {
                let sizes = (0..<40).map { i in 1 + (i * 7919 + index * 104_729) % 70_000 }
                let expected = sizes.reduce(0, +)
                let writerBox = Handed(connection: a), readerBox = Handed(connection: b)
                group.addTask(executorPreference: loop) {
                    let writer = writerBox.connection
                    for size in sizes {
                        try await writer.write([UInt8](repeating: UInt8(truncatingIfNeeded: size), count: size), deadline: deadline(after: 10))
                        if size % 3 == 0 { try await loop.sleep(seconds: 0.0005) }
                    }
                    return (0, 0)  // a writer that cannot write for 10 s throws: the test fails instead of hanging
                }
                group.addTask(executorPreference: loop) {
                    let reader = readerBox.connection
                    let buffer = UnsafeMutableRawPointer.allocate(byteCount: 4096, alignment: 1)
                    defer { buffer.deallocate() }
                    var received = 0, timeouts = 0
                    var turn = 0
                    while received < expected {
                        turn += 1
                        do {
                            let n = try await reader.read(into: buffer, count: 4096, deadline: deadline(after: 5), waitFirst: turn % 2 == 0)
                            if n == 0 { break }
                            received += n
                        } catch EventLoopError.timedOut {
                            timeouts += 1
                            break
                        }
                    }
                    return (received, timeouts)
                }
            }
            return try await group.reduce((0, 0)) { ($0.0 + $1.0, $0.1 + $1.1) }
        }
        let expected = pairs.indices.map { index in (0..<40).map { i in 1 + (i * 7919 + index * 104_729) % 70_000 }.reduce(0, +) }.reduce(0, +)
        #expect(timeouts == 0, "reads that waited 5 s for bytes already sent: lost edges")
        #expect(total == expected)
    }

    /// An edge that comes while nobody waits is kept: the next wait returns without one.
    @Test func anEdgeBeforeTheWaitIsKept() async throws {
        let (a, b) = Self.pair()
        try await a.write(Array("x".utf8))
        try await EventLoop.shared.sleep(seconds: 0.05)  // the loop records the edge with no waiter
        try await EventLoop.shared.wait(b.fd, for: .read, deadline: deadline(after: 0.5))
        var byte: UInt8 = 0
        #expect(Glibc.read(b.fd, &byte, 1) == 1)
    }

    /// Closing a descriptor a task waits on wakes that task with `badDescriptor`.
    @Test func closingWakesTheWaiter() async throws {
        let (a, b) = Self.pair()
        let fd = b.fd
        let waiting = Task(executorPreference: EventLoop.shared) { () -> (any Error)? in
            do { try await EventLoop.shared.wait(fd, for: .read, deadline: deadline(after: 5)); return nil } catch { return error }
        }
        try await EventLoop.shared.sleep(seconds: 0.05)
        b.close()
        let error = await waiting.value
        #expect(error as? EventLoopError == .badDescriptor)
        a.close()
    }

    /// A descriptor replaced behind the loop's back while a copy keeps its old file open (as a child
    /// being spawned holds one): events of the old file, still registered under the number, must not
    /// reach the number's next owner.
    @Test func eventsOfAReplacedDescriptorDoNotReachItsNumbersNextOwner() async throws {
        let loop = EventLoop.shared
        var old: [Int32] = [-1, -1], new: [Int32] = [-1, -1]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &old) == 0)
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &new) == 0)
        let number = old[0]
        configureDescriptor(number, nonBlocking: true)
        loop.adopt(number)
        let copy = dup(number)     // keeps the old file, and so its epoll registration, alive
        dup2(new[0], number)       // the number now names the new socket: no EPOLL_CTL_DEL happened
        Glibc.close(new[0])
        configureDescriptor(number, nonBlocking: true)
        loop.adopt(number)
        _ = Glibc.write(old[1], "stale", 5)  // an edge on the old file, reported under `number`
        await #expect(throws: EventLoopError.timedOut) {
            try await loop.wait(number, for: .read, deadline: deadline(after: 0.2))
        }
        _ = Glibc.write(new[1], "new", 3)
        try await loop.wait(number, for: .read, deadline: deadline(after: 2))
        var bytes = [UInt8](repeating: 0, count: 8)
        #expect(Glibc.read(number, &bytes, 8) == 3)
        loop.close(number)
        for fd in [copy, old[1], new[1]] { Glibc.close(fd) }
    }

    @Test func aWaitTimesOutAtItsDeadline() async throws {
        let (a, b) = Self.pair()
        let started = monotonicNanos()
        await #expect(throws: EventLoopError.timedOut) {
            try await EventLoop.shared.wait(b.fd, for: .read, deadline: deadline(after: 0.1))
        }
        #expect(monotonicNanos() - started >= 100_000_000)
        a.close()
        b.close()
    }

    @Test func aDescriptorTheLoopDoesNotHoldIsRefused() async throws {
        var fds: [Int32] = [-1, -1]
        #expect(pipe(&fds) == 0)
        await #expect(throws: EventLoopError.badDescriptor) {
            try await EventLoop.shared.wait(fds[0], for: .read, deadline: deadline(after: 1))
        }
        Glibc.close(fds[0])
        Glibc.close(fds[1])
    }

    /// The hops a kept-alive request costs the server's loop, counted: one suspension waiting for the
    /// request and one resumption when it arrives, nothing more (no task or executor hop per request).
    @Test func aKeptAliveRequestCostsTheServerOneHop() async throws {
        struct Hello: HTTPHandler {
            func handle(_ request: HTTPRequest) async throws -> HTTPResponse { .text("hello") }
        }
        let loop = EventLoop(name: "hop-count")
        let server = try HTTPServer(address: .tcp(host: "127.0.0.1", port: 0), handler: Hello(), loop: loop)
        server.start()
        let client = try await RawClient.connect(port: server.port)
        for _ in 0..<20 { try await client.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n"); _ = try await client.readResponse() }
        let before = loop.counts
        let requests = 500
        for _ in 0..<requests {
            try await client.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            #expect(try await client.readResponse().text == "hello")
        }
        let after = loop.counts
        let jobs = Double(after.jobs - before.jobs) / Double(requests)
        let suspended = Double(after.suspendedWaits - before.suspendedWaits) / Double(requests)
        #expect(jobs <= 1.05, "\(jobs) jobs per request on the server's loop")
        #expect(suspended <= 1.05, "\(suspended) suspended waits per request")
        await server.stop(grace: 1)
    }
}
