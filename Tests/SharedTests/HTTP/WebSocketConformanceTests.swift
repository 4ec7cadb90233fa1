import Glibc
import Synchronization
import Testing
@testable import Shared

/// What a server's sessions did, for the cases that look inside the server.
final class WebSocketProbe: Sendable {
    let sessions = Atomic<Int>(0)
    /// Sessions whose `receive()` returned nil.
    let receivedNil = Atomic<Int>(0)
    /// Frames the flooding session has finished sending.
    let framesSent = Atomic<Int>(0)
    let closeCodes = Mutex<[UInt16]>([])

    var nilReturns: Int { receivedNil.load(ordering: .sequentiallyConsistent) }
    var sent: Int { framesSent.load(ordering: .sequentiallyConsistent) }
    var codes: [UInt16] { closeCodes.withLock { $0 } }
}

/// The project's own conformance table after the Autobahn TestSuite's case list (sections 1–7 and 9;
/// compression, sections 12 and 13, is not negotiated here), played over real loopback sockets
/// against an echo session: each row is a case id, what the client sends byte-exact (whole, in chops,
/// with pauses) and what must come back. Ids starting with "x" are this project's additions.
@Suite struct WebSocketConformanceTests {
    /// What the client expects next from the server.
    enum Expected: Sendable, CustomStringConvertible {
        case text([UInt8]), binary([UInt8]), pong([UInt8])
        /// A Close frame with this code (nil: an empty payload).
        case close(UInt16?)

        var description: String {
            switch self {
            case .text(let b): "text(\(b.count) bytes)"
            case .binary(let b): "binary(\(b.count) bytes)"
            case .pong(let b): "pong(\(b.count) bytes)"
            case .close(let c): "close(\(c.map(String.init) ?? "no code"))"
            }
        }
    }

    enum Step: Sendable {
        case send([UInt8])
        /// Sends in pieces of this size, pausing between them.
        case chopped([UInt8], Int, delay: Double)
        case pause(Double)
        case expect(Expected)
        /// Nothing may arrive for this long.
        case silence(Double)
    }

    /// How a case ends once its steps are done.
    enum Ending: Sendable {
        /// The client sends Close with this code: the server answers with the same code and then
        /// closes the TCP connection itself (RFC 6455 §7.1.1: the server closes first).
        case clientCloses(UInt16?)
        /// The server already sent its Close: nothing more may come, and TCP closes.
        case serverClosed
    }

    struct Case: Sendable {
        var id: String
        var title: String
        var steps: [Step]
        var ending: Ending = .clientCloses(1000)
        /// The endpoint: "/ws" (default limits) or "/limited" (64 KiB messages).
        var path = "/ws"
    }

    static let limit = 64 * 1024

    // MARK: The server

    static func echo(_ ws: WebSocket, _ probe: WebSocketProbe? = nil) async {
        probe?.sessions.add(1, ordering: .sequentiallyConsistent)
        do {
            while let message = try await ws.receive() {
                switch message {
                case .text(let s): try await ws.send(text: s)
                case .binary(let b): try await ws.send(binary: b)
                }
            }
            probe?.receivedNil.add(1, ordering: .sequentiallyConsistent)
        } catch {}
        if let code = ws.closeStatus?.code { probe?.closeCodes.withLock { $0.append(code) } }
    }

    static func echoHandler(_ configure: @escaping @Sendable (inout WebSocket.Configuration) -> Void = { _ in },
                            probe: WebSocketProbe? = nil, loop: EventLoop = .shared) -> ClosureHandler {
        ClosureHandler { request in
            var config = WebSocket.Configuration()
            if request.path == "/limited" { config.maxMessageBytes = limit }
            configure(&config)
            return WebSocketHandshake.response(to: request, configuration: config) { await echo($0, probe) }
        }
    }

    // MARK: Playing a case

    /// Plays one case on a fresh connection; returns what went wrong (empty: the case passed).
    static func play(_ c: Case, port: UInt16, loop: EventLoop) async -> [String] {
        let client: WebSocketRawClient
        do {
            client = try await WebSocketRawClient.connect(port: port, path: c.path, loop: loop)
        } catch {
            return ["\(error)"]
        }
        defer { client.close() }
        do {
            for (i, step) in c.steps.enumerated() {
                switch step {
                case .send(let bytes):
                    try await client.send(bytes)
                case .chopped(let bytes, let size, let delay):
                    try await client.send(bytes, chop: size, delay: delay)
                case .pause(let seconds):
                    try await Task.sleep(for: .seconds(seconds))
                case .expect(let expected):
                    guard let frame = try await client.readFrame(timeout: 20) else {
                        return ["step \(i): expected \(expected), the server closed the connection"]
                    }
                    if let problem = mismatch(frame, expected) { return ["step \(i): \(problem)"] }
                case .silence(let seconds):
                    do {
                        let frame = try await client.readFrame(timeout: seconds)
                        return ["step \(i): expected silence, got \(frame.map { "\($0)" } ?? "end of stream")"]
                    } catch WebSocketRawClient.Failure.timedOut {}
                }
            }
            switch c.ending {
            case .clientCloses(let code):
                try await client.send(ClientFrame.close(code))
                guard let frame = try await client.readFrame(timeout: 5) else { return ["no Close answered the client's Close"] }
                if let problem = mismatch(frame, .close(code)) { return ["the answer to Close: \(problem)"] }
                if !(await client.closedByServer(within: 3)) { return ["the server did not close TCP after the Close handshake"] }
            case .serverClosed:
                if !(await client.closedByServer(within: 3)) { return ["the server sent more, or kept TCP open, after its Close"] }
            }
        } catch {
            return ["\(error)"]
        }
        return []
    }

    static func mismatch(_ f: WebSocketRawClient.Frame, _ e: Expected) -> String? {
        let (opcode, payload): (UInt8, [UInt8]?) = switch e {
        case .text(let b): (0x1, b)
        case .binary(let b): (0x2, b)
        case .pong(let b): (0xA, b)
        case .close: (0x8, nil)
        }
        guard f.fin, f.rsv == 0, f.opcode == opcode else { return "expected \(e), got \(f)" }
        if let payload, f.payload != payload { return "expected \(e), got a different payload: \(f)" }
        if case .close(let code) = e {
            if f.closeCode != code || (code == nil && !f.payload.isEmpty) { return "expected \(e), got close code \(f.closeCode.map(String.init) ?? "none")" }
            if f.payload.count > 2 && !UTF8Validator.isValid(Array(f.payload[2...])) { return "a close reason that is not UTF-8" }
        }
        return nil
    }

    // MARK: The table

    static func t(_ s: String) -> [UInt8] { Array(s.utf8) }
    static func pattern(_ n: Int) -> [UInt8] { (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 9) } }
    static func asciiPattern(_ n: Int) -> [UInt8] { (0..<n).map { UInt8(0x20 + $0 % 95) } }

    static func echoText(_ id: String, _ title: String, _ bytes: [UInt8]) -> Case {
        Case(id: id, title: title, steps: [.send(ClientFrame.text(bytes: bytes)), .expect(.text(bytes))])
    }

    static func fails(_ id: String, _ title: String, _ code: UInt16, _ steps: [Step]) -> Case {
        Case(id: id, title: title, steps: steps + [.expect(.close(code))], ending: .serverClosed)
    }

    /// Frames sent one by one with a pause between them.
    static func frameWise(_ frames: [[UInt8]], delay: Double = 0.02) -> [Step] {
        frames.flatMap { [Step.send($0), .pause(delay)] }
    }

    static func section1() -> [Case] {
        let lengths = [0, 125, 126, 127, 128, 65535, 65536]
        var cases: [Case] = []
        for (i, n) in lengths.enumerated() {
            let text = [UInt8](repeating: UInt8(ascii: "*"), count: n)
            cases.append(echoText("1.1.\(i + 1)", "text message of \(n) bytes", text))
        }
        let t64k = [UInt8](repeating: UInt8(ascii: "*"), count: 65536)
        cases.append(Case(id: "1.1.8", title: "text message of 65536 bytes sent in chops of 997",
                          steps: [.chopped(ClientFrame.text(bytes: t64k), 997, delay: 0), .expect(.text(t64k))]))
        for (i, n) in lengths.enumerated() {
            let b = [UInt8](repeating: 0xFE, count: n)
            cases.append(Case(id: "1.2.\(i + 1)", title: "binary message of \(n) bytes", steps: [.send(ClientFrame.binary(b)), .expect(.binary(b))]))
        }
        let b64k = pattern(65536)
        cases.append(Case(id: "1.2.8", title: "binary message of 65536 bytes sent in chops of 997",
                          steps: [.chopped(ClientFrame.binary(b64k), 997, delay: 0), .expect(.binary(b64k))]))
        return cases
    }

    static func section2() -> [Case] {
        let bin: [UInt8] = [0x00, 0xFF, 0xFE, 0xFD, 0xFC, 0xFB, 0x00, 0xFF]
        let p125 = [UInt8](repeating: 0xFE, count: 125)
        let pings = (0..<10).map { t("payload-\($0)") }
        return [
            Case(id: "2.1", title: "ping without payload", steps: [.send(ClientFrame.ping()), .expect(.pong([]))]),
            Case(id: "2.2", title: "ping with a small text payload", steps: [.send(ClientFrame.ping(t("Hello, world!"))), .expect(.pong(t("Hello, world!")))]),
            Case(id: "2.3", title: "ping with a small binary payload", steps: [.send(ClientFrame.ping(bin)), .expect(.pong(bin))]),
            Case(id: "2.4", title: "ping with a 125-byte payload", steps: [.send(ClientFrame.ping(p125)), .expect(.pong(p125))]),
            fails("2.5", "ping with a 126-byte payload", 1002, [.send(ClientFrame.ping(p125 + [0xFE]))]),
            Case(id: "2.6", title: "ping with a 125-byte payload, sent octet by octet", steps: [.chopped(ClientFrame.ping(p125), 1, delay: 0), .expect(.pong(p125))]),
            Case(id: "2.7", title: "unsolicited pong without payload is ignored", steps: [.send(ClientFrame.pong()), .silence(0.2)]),
            Case(id: "2.8", title: "unsolicited pong with payload is ignored", steps: [.send(ClientFrame.pong(t("unsolicited pong payload"))), .silence(0.2)]),
            Case(id: "2.9", title: "unsolicited pong, then ping: only the ping is answered",
                 steps: [.send(ClientFrame.pong(t("unsolicited pong payload")) + ClientFrame.ping(t("ping payload"))), .expect(.pong(t("ping payload")))]),
            Case(id: "2.10", title: "ten pings get ten pongs in order", steps: [.send(pings.flatMap { ClientFrame.ping($0) })] + pings.map { .expect(.pong($0)) }),
            Case(id: "2.11", title: "ten pings sent octet by octet get ten pongs",
                 steps: [.chopped(pings.flatMap { ClientFrame.ping($0) }, 1, delay: 0)] + pings.map { .expect(.pong($0)) }),
        ]
    }

    static func section3() -> [Case] {
        let hello = t("Hello, world!")
        let ok: [Step] = [.send(ClientFrame.text(bytes: hello)), .expect(.text(hello))]
        return [
            fails("3.1", "text with RSV = 1", 1002, [.send(ClientFrame.text("Hello, world!", rsv: 1))]),
            fails("3.2", "text, then text with RSV = 2, then ping: the first is echoed, no pong", 1002,
                  ok + [.send(ClientFrame.text("Hello, world!", rsv: 2) + ClientFrame.ping(hello))]),
            fails("3.3", "as 3.2 with RSV = 3, frame by frame with pauses", 1002,
                  frameWise([ClientFrame.text(bytes: hello)]) + [.expect(.text(hello))] + frameWise([ClientFrame.text("Hello, world!", rsv: 3), ClientFrame.ping(hello)])),
            fails("3.4", "as 3.2 with RSV = 4, octet by octet", 1002,
                  [.chopped(ClientFrame.text(bytes: hello) + ClientFrame.text("Hello, world!", rsv: 4) + ClientFrame.ping(hello), 1, delay: 0), .expect(.text(hello))]),
            fails("3.5", "binary with RSV = 5", 1002, [.send(ClientFrame.binary([0xFF, 0xFE], rsv: 5))]),
            fails("3.6", "ping with RSV = 6", 1002, [.send(ClientFrame.ping(hello, rsv: 6))]),
            fails("3.7", "close with RSV = 7", 1002, [.send(ClientFrame.close(1000, rsv: 7))]),
        ]
    }

    static func section4() -> [Case] {
        let hello = t("Hello, world!")
        var cases: [Case] = []
        for (group, opcodes) in [(1, [UInt8(3), 4, 5, 6, 7]), (2, [UInt8(0xB), 0xC, 0xD, 0xE, 0xF])] {
            for (i, op) in opcodes.enumerated() {
                let id = "4.\(group).\(i + 1)", kind = group == 1 ? "non-control" : "control"
                let frame = ClientFrame.make(op, i % 2 == 1 ? hello : [])
                switch i {
                case 0, 1:
                    cases.append(fails(id, "reserved \(kind) opcode \(op)", 1002, [.send(frame)]))
                case 2, 3:
                    cases.append(fails(id, "text, reserved \(kind) opcode \(op), ping: text echoed, no pong", 1002,
                                       [.send(ClientFrame.text(bytes: hello) + frame + ClientFrame.ping(hello)), .expect(.text(hello))]))
                default:
                    cases.append(fails(id, "as \(id.dropLast())4, octet by octet", 1002,
                                       [.chopped(ClientFrame.text(bytes: hello) + frame + ClientFrame.ping(hello), 1, delay: 0), .expect(.text(hello))]))
                }
            }
        }
        return cases
    }

    static func section5() -> [Case] {
        let f1 = ClientFrame.text("fragment1", fin: false), f2 = ClientFrame.continuation("fragment2", fin: true)
        let whole = t("fragment1fragment2")
        let ping = ClientFrame.ping(t("ping payload"))
        let loneFin = ClientFrame.continuation("non-continuation payload", fin: true)
        let loneNoFin = ClientFrame.continuation("non-continuation payload", fin: false)
        let text = ClientFrame.text("Hello, world!")
        let five = (1...5).map { t("fragment\($0)") }
        let fiveFrames = five.enumerated().map { i, p in i == 0 ? ClientFrame.text(bytes: p, fin: false) : ClientFrame.continuation(p, fin: i == 4) }
        return [
            fails("5.1", "ping in two fragments", 1002, [.send(ClientFrame.ping(t("fragment1"), fin: false) + ClientFrame.continuation("fragment2", fin: true))]),
            fails("5.2", "pong in two fragments", 1002, [.send(ClientFrame.pong(t("fragment1"), fin: false) + ClientFrame.continuation("fragment2", fin: true))]),
            Case(id: "5.3", title: "text in two fragments", steps: [.send(f1 + f2), .expect(.text(whole))]),
            Case(id: "5.4", title: "text in two fragments, frame by frame", steps: frameWise([f1, f2]) + [.expect(.text(whole))]),
            Case(id: "5.5", title: "text in two fragments, octet by octet with pauses", steps: [.chopped(f1 + f2, 1, delay: 0.001), .expect(.text(whole))]),
            Case(id: "5.6", title: "text in two fragments with a ping between", steps: [.send(f1 + ping + f2), .expect(.pong(t("ping payload"))), .expect(.text(whole))]),
            Case(id: "5.7", title: "as 5.6, frame by frame", steps: frameWise([f1, ping, f2]) + [.expect(.pong(t("ping payload"))), .expect(.text(whole))]),
            Case(id: "5.8", title: "as 5.6, octet by octet", steps: [.chopped(f1 + ping + f2, 1, delay: 0), .expect(.pong(t("ping payload"))), .expect(.text(whole))]),
            fails("5.9", "continuation (FIN) with nothing to continue, then text", 1002, [.send(loneFin + text)]),
            fails("5.10", "as 5.9, frame by frame", 1002, frameWise([loneFin, text])),
            fails("5.11", "as 5.9, octet by octet", 1002, [.chopped(loneFin + text, 1, delay: 0)]),
            fails("5.12", "continuation (no FIN) with nothing to continue, then text", 1002, [.send(loneNoFin + text)]),
            fails("5.13", "as 5.12, frame by frame", 1002, frameWise([loneNoFin, text])),
            fails("5.14", "as 5.12, octet by octet", 1002, [.chopped(loneNoFin + text, 1, delay: 0)]),
            fails("5.15", "text in two fragments, then a continuation with nothing to continue", 1002,
                  [.send(f1 + f2 + ClientFrame.continuation("fragment3", fin: false) + ClientFrame.continuation("fragment4", fin: true)), .expect(.text(whole))]),
            fails("5.16", "2× (continuation with nothing to continue, then a fragmented text)", 1002,
                  [.send(loneNoFin + f1 + f2 + loneNoFin + f1 + f2)]),
            fails("5.17", "as 5.16 with FIN on the lone continuation", 1002, [.send(loneFin + f1 + f2 + loneFin + f1 + f2)]),
            fails("5.18", "text in two fragments, both with the text opcode", 1002, [.send(f1 + ClientFrame.text("fragment2"))]),
            Case(id: "5.19", title: "text in five fragments with two pings between, paced",
                 steps: [.send(fiveFrames[0] + fiveFrames[1] + ClientFrame.ping(t("pongme 1!"))), .expect(.pong(t("pongme 1!"))), .pause(0.2),
                         .send(fiveFrames[2] + fiveFrames[3] + ClientFrame.ping(t("pongme 2!"))), .expect(.pong(t("pongme 2!"))), .pause(0.2),
                         .send(fiveFrames[4]), .expect(.text(five.flatMap { $0 }))]),
            Case(id: "5.20", title: "as 5.19, octet by octet",
                 steps: [.chopped(fiveFrames[0] + fiveFrames[1] + ClientFrame.ping(t("pongme 1!")), 1, delay: 0), .expect(.pong(t("pongme 1!"))),
                         .chopped(fiveFrames[2] + fiveFrames[3] + ClientFrame.ping(t("pongme 2!")), 1, delay: 0), .expect(.pong(t("pongme 2!"))),
                         .chopped(fiveFrames[4], 1, delay: 0), .expect(.text(five.flatMap { $0 }))]),
            Case(id: "x5.1", title: "binary in three fragments with a ping and a pong between",
                 steps: [.send(ClientFrame.binary([1, 2], fin: false) + ClientFrame.ping([9]) + ClientFrame.continuation([3], fin: false) + ClientFrame.pong([8])
                               + ClientFrame.continuation([4, 5], fin: true)), .expect(.pong([9])), .expect(.binary([1, 2, 3, 4, 5]))]),
            fails("x5.2", "a binary frame inside a fragmented text", 1002, [.send(f1 + ClientFrame.binary([1]))]),
            fails("x5.3", "a fragmented close", 1002, [.send(ClientFrame.make(0x8, [0x03, 0xE8], fin: false) + ClientFrame.continuation([], fin: true))]),
        ]
    }

    static let kosme = t("κόσμε")

    static func section6() -> [Case] {
        var cases: [Case] = [
            echoText("6.1.1", "empty text", []),
            Case(id: "6.1.2", title: "text in three empty fragments",
                 steps: [.send(ClientFrame.text(bytes: [], fin: false) + ClientFrame.continuation([], fin: false) + ClientFrame.continuation([], fin: true)), .expect(.text([]))]),
            Case(id: "6.1.3", title: "text in three fragments, the outer two empty",
                 steps: [.send(ClientFrame.text(bytes: [], fin: false) + ClientFrame.continuation("middle frame payload", fin: false) + ClientFrame.continuation([], fin: true)),
                         .expect(.text(t("middle frame payload")))]),
        ]
        let hello = t("Hello-µ@ßöäüàá-UTF-8!!")
        cases += [
            echoText("6.2.1", "valid UTF-8 in one frame", hello),
            Case(id: "6.2.2", title: "valid UTF-8 in two fragments split at a character",
                 steps: [.send(ClientFrame.text(bytes: Array(hello[..<9]), fin: false) + ClientFrame.continuation(Array(hello[9...]), fin: true)), .expect(.text(hello))]),
            Case(id: "6.2.3", title: "valid UTF-8 sent octet by octet", steps: [.chopped(ClientFrame.text(bytes: hello), 1, delay: 0), .expect(.text(hello))]),
            Case(id: "6.2.4", title: "valid UTF-8 in one-octet fragments, splitting characters",
                 steps: [.send(kosme.enumerated().flatMap { i, b in i == 0 ? ClientFrame.text(bytes: [b], fin: false) : ClientFrame.continuation([b], fin: i == kosme.count - 1) }),
                         .expect(.text(kosme))]),
        ]
        let bad = kosme + [0xED, 0xA0, 0x80] + t("edited")
        cases += [
            fails("6.3.1", "invalid UTF-8 (a surrogate) in one frame", 1007, [.send(ClientFrame.text(bytes: bad))]),
            fails("6.3.2", "as 6.3.1, in one-octet fragments", 1007,
                  [.send(bad.enumerated().flatMap { i, b in i == 0 ? ClientFrame.text(bytes: [b], fin: false) : ClientFrame.continuation([b], fin: i == bad.count - 1) })]),
        ]
        // 6.4: fail fast. The server must fail at the bad fragment or bytes, before the rest is sent.
        let tooBig: [UInt8] = [0xF4, 0x90, 0x80, 0x80]
        let single = ClientFrame.text(bytes: kosme + tooBig + t("edited"))
        let header = 6
        cases += [
            fails("6.4.1", "invalid fragment 2 of 3 fails before fragment 3 is sent", 1007,
                  [.send(ClientFrame.text(bytes: kosme, fin: false)), .silence(0.1), .send(ClientFrame.continuation(tooBig, fin: false))]),
            fails("6.4.2", "as 6.4.1, fragment 2 ending at the first invalid octet", 1007,
                  [.send(ClientFrame.text(bytes: kosme + [0xF4], fin: false)), .silence(0.1), .send(ClientFrame.continuation([0x90], fin: false))]),
            fails("6.4.3", "one frame in chops: the invalid chop fails before the last is sent", 1007,
                  [.send(Array(single[..<(header + kosme.count)])), .silence(0.1), .send(Array(single[(header + kosme.count)..<(header + kosme.count + 4)]))]),
            fails("6.4.4", "as 6.4.3, the chop ending at the first invalid octet", 1007,
                  [.send(Array(single[..<(header + kosme.count)])), .silence(0.1), .send(Array(single[(header + kosme.count)..<(header + kosme.count + 2)]))]),
        ]
        let valid: [(String, [UInt8])] = [
            ("6.5.1", kosme), ("6.5.2", t("日本語のテキスト")), ("6.5.3", t("Привет, мир")), ("6.5.4", t("𝄞 😀 🇺🇳")),
            ("6.5.5", t("mixed: a ß 中 𐍈 ✓ z")),
            ("6.7.1", [0x00]), ("6.7.2", [0xC2, 0x80]), ("6.7.3", [0xE0, 0xA0, 0x80]), ("6.7.4", [0xF0, 0x90, 0x80, 0x80]),
            ("6.9.1", [0x7F]), ("6.9.2", [0xDF, 0xBF]), ("6.9.3", [0xEF, 0xBF, 0xBF]), ("6.9.4", [0xF4, 0x8F, 0xBF, 0xBF]),
            ("6.11.1", [0xED, 0x9F, 0xBF]), ("6.11.2", [0xEE, 0x80, 0x80]), ("6.11.3", [0xEF, 0xBF, 0xBD]), ("6.11.4", [0xF4, 0x8F, 0xBF, 0xBF]),
            ("6.22.1", [0xEF, 0xBF, 0xBE]), ("6.22.2", [0xEF, 0xBF, 0xBF]), ("6.22.3", [0xF4, 0x8F, 0xBF, 0xBE]), ("6.23.1", [0xEF, 0xBF, 0xBD]),
        ]
        cases += valid.map { echoText($0.0, "valid UTF-8 \(hexString($0.1))", $0.1) }
        let invalid: [(String, [UInt8])] = [
            ("6.8.1", [0xF8, 0x88, 0x80, 0x80, 0x80]), ("6.8.2", [0xFC, 0x84, 0x80, 0x80, 0x80, 0x80]),
            ("6.10.1", [0xF7, 0xBF, 0xBF, 0xBF]), ("6.10.2", [0xFB, 0xBF, 0xBF, 0xBF, 0xBF]), ("6.10.3", [0xFD, 0xBF, 0xBF, 0xBF, 0xBF, 0xBF]),
            ("6.11.5", [0xF4, 0x90, 0x80, 0x80]),
            ("6.12.1", [0x80]), ("6.12.2", [0xBF]), ("6.12.3", [0x80, 0xBF]), ("6.12.4", [0x80, 0xBF, 0x80]),
            ("6.13.1", [0xC0, 0x20, 0xC1, 0x20]), ("6.13.2", [0xE0, 0x20, 0xE1, 0x20]), ("6.13.3", [0xF0, 0x20, 0xF1, 0x20]),
            ("6.14.1", [0xC2]), ("6.14.2", [0xE0, 0xA0]), ("6.14.3", [0xF0, 0x90, 0x80]), ("6.14.4", [0xDF]), ("6.14.5", [0xEF, 0xBF]),
            ("6.14.6", [0xF4, 0x8F, 0xBF]),
            ("6.15.1", [0xC2, 0xE0, 0xA0, 0xF0, 0x90, 0x80]),
            ("6.16.1", [0xFE]), ("6.16.2", [0xFF]), ("6.16.3", [0xFE, 0xFE, 0xFF, 0xFF]),
            ("6.17.1", [0xC0, 0xAF]), ("6.17.2", [0xE0, 0x80, 0xAF]), ("6.17.3", [0xF0, 0x80, 0x80, 0xAF]),
            ("6.18.1", [0xC1, 0xBF]), ("6.18.2", [0xE0, 0x9F, 0xBF]), ("6.18.3", [0xF0, 0x8F, 0xBF, 0xBF]),
            ("6.19.1", [0xC0, 0x80]), ("6.19.2", [0xE0, 0x80, 0x80]), ("6.19.3", [0xF0, 0x80, 0x80, 0x80]),
            ("6.20.1", [0xED, 0xA0, 0x80]), ("6.20.2", [0xED, 0xAD, 0xBF]), ("6.20.3", [0xED, 0xAE, 0x80]), ("6.20.4", [0xED, 0xAF, 0xBF]),
            ("6.20.5", [0xED, 0xB0, 0x80]), ("6.20.6", [0xED, 0xBE, 0x80]), ("6.20.7", [0xED, 0xBF, 0xBF]),
            ("6.21.1", [0xED, 0xA0, 0x80, 0xED, 0xB0, 0x80]), ("6.21.2", [0xED, 0xAF, 0xBF, 0xED, 0xBF, 0xBF]),
        ]
        cases += invalid.map { fails($0.0, "invalid UTF-8 \(hexString($0.1))", 1007, [.send(ClientFrame.text(bytes: t("x") + $0.1))]) }
        return cases
    }

    static func hexString(_ b: [UInt8]) -> String { b.map { String($0, radix: 16, uppercase: true) }.joined(separator: " ") }

    static func section7() -> [Case] {
        let hello = t("Hello World!")
        var cases: [Case] = [
            Case(id: "7.1.1", title: "text echoed, then a normal close: Close answered and TCP closed by the server",
                 steps: [.send(ClientFrame.text(bytes: hello)), .expect(.text(hello))]),
            Case(id: "7.1.2", title: "two Closes: one answer", steps: [.send(ClientFrame.close(1000) + ClientFrame.close(1000)), .expect(.close(1000))], ending: .serverClosed),
            Case(id: "7.1.3", title: "Close, then ping: no pong", steps: [.send(ClientFrame.close(1000) + ClientFrame.ping(hello)), .expect(.close(1000))], ending: .serverClosed),
            Case(id: "7.1.4", title: "Close, then text: not echoed", steps: [.send(ClientFrame.close(1000) + ClientFrame.text(bytes: hello)), .expect(.close(1000))],
                 ending: .serverClosed),
            Case(id: "7.1.5", title: "first fragment, Close, last fragment: nothing echoed",
                 steps: [.send(ClientFrame.text("fragment1", fin: false) + ClientFrame.close(1000) + ClientFrame.continuation("fragment2", fin: true)),
                         .expect(.close(1000))], ending: .serverClosed),
            Case(id: "7.1.6", title: "256 KiB text, Close, ping: the text is echoed, then the Close answered",
                 steps: [.send(ClientFrame.text(bytes: asciiPattern(256 << 10)) + ClientFrame.close(1000) + ClientFrame.ping(hello)),
                         .expect(.text(asciiPattern(256 << 10))), .expect(.close(1000))], ending: .serverClosed),
            Case(id: "7.3.1", title: "Close without payload answered without payload", steps: [], ending: .clientCloses(nil)),
            fails("7.3.2", "Close with a 1-byte payload", 1002, [.send(ClientFrame.make(0x8, [0x2A]))]),
            Case(id: "7.3.3", title: "Close 1000 without reason", steps: [], ending: .clientCloses(1000)),
            Case(id: "7.3.4", title: "Close 1000 with a reason",
                 steps: [.send(ClientFrame.close(1000, reason: hello)), .expect(.close(1000))], ending: .serverClosed),
            Case(id: "7.3.5", title: "Close 1000 with a 123-byte reason",
                 steps: [.send(ClientFrame.close(1000, reason: [UInt8](repeating: 0x2A, count: 123))), .expect(.close(1000))], ending: .serverClosed),
            fails("7.3.6", "Close 1000 with a 124-byte reason (payload 126)", 1002, [.send(ClientFrame.close(1000, reason: [UInt8](repeating: 0x2A, count: 124)))]),
            fails("7.5.1", "Close with a reason that is not UTF-8", 1007, [.send(ClientFrame.close(1000, reason: kosme + [0xED, 0xA0, 0x80] + t("edited")))]),
            fails("x7.1", "an unmasked Close", 1002, [.send(ClientFrame.make(0x8, [0x03, 0xE8], mask: nil))]),
            fails("x7.2", "an unmasked text frame", 1002, [.send(ClientFrame.make(0x1, hello, mask: nil))]),
        ]
        let validCodes: [UInt16] = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999]
        cases += validCodes.enumerated().map { (i: Int, code: UInt16) in Case(id: "7.7.\(i + 1)", title: "Close \(code) echoed", steps: [], ending: .clientCloses(code)) }
        cases += [UInt16(1012), 1013, 1014].enumerated().map { (i: Int, code: UInt16) in Case(id: "x7.7.\(i + 1)", title: "Close \(code) (IANA) echoed", steps: [], ending: .clientCloses(code)) }
        let invalidCodes: [UInt16] = [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999]
        cases += invalidCodes.enumerated().map { (i: Int, code: UInt16) in fails("7.9.\(i + 1)", "Close \(code)", 1002, [.send(ClientFrame.close(code))]) }
        cases += [UInt16(5000), 65535].enumerated().map { (i: Int, code: UInt16) in fails("7.13.\(i + 1)", "Close \(code)", 1002, [.send(ClientFrame.close(code))]) }
        return cases
    }

    static func section9() -> [Case] {
        var cases: [Case] = []
        let sizes = [64 << 10, 256 << 10, 1 << 20, 4 << 20]
        for (i, n) in sizes.enumerated() {
            let text = asciiPattern(n)
            cases.append(echoText("9.1.\(i + 1)", "text of \(n >> 10) KiB", text))
        }
        for (i, n) in sizes.enumerated() {
            let b = pattern(n)
            cases.append(Case(id: "9.2.\(i + 1)", title: "binary of \(n >> 10) KiB", steps: [.send(ClientFrame.binary(b)), .expect(.binary(b))]))
        }
        // The fragmented and chopped rows use 256 KiB messages: the whole table stays a few seconds of
        // CPU in a debug build on two cores (the single-message rows above go to 4 MiB).
        let mib = 256 << 10
        let text = asciiPattern(mib), binary = pattern(mib)
        func fragments(_ payload: [UInt8], _ size: Int, text isText: Bool) -> [UInt8] {
            var out: [UInt8] = []
            var i = 0
            while i < payload.count {
                let end = min(i + size, payload.count)
                let piece = Array(payload[i..<end])
                out += i == 0 ? ClientFrame.make(isText ? 0x1 : 0x2, piece, fin: end == payload.count) : ClientFrame.continuation(piece, fin: end == payload.count)
                i = end
            }
            return out
        }
        for (i, size) in [64, 256, 1 << 10, 4 << 10, 16 << 10, 64 << 10, 256 << 10].enumerated() {
            cases.append(Case(id: "9.3.\(i + 1)", title: "256 KiB text in fragments of \(size)", steps: [.send(fragments(text, size, text: true)), .expect(.text(text))]))
            cases.append(Case(id: "9.4.\(i + 1)", title: "256 KiB binary in fragments of \(size)", steps: [.send(fragments(binary, size, text: false)), .expect(.binary(binary))]))
        }
        for (i, chop) in [64, 1 << 10, 4 << 10, 64 << 10].enumerated() {
            let n = chop == 64 ? 64 << 10 : mib
            cases.append(Case(id: "9.5.\(i + 1)", title: "\(n >> 10) KiB text sent in chops of \(chop)",
                              steps: [.chopped(ClientFrame.text(bytes: asciiPattern(n)), chop, delay: 0), .expect(.text(asciiPattern(n)))]))
            cases.append(Case(id: "9.6.\(i + 1)", title: "\(n >> 10) KiB binary sent in chops of \(chop)",
                              steps: [.chopped(ClientFrame.binary(pattern(n)), chop, delay: 0), .expect(.binary(pattern(n)))]))
        }
        let small = (0..<1000).map { t("message \($0) ✓") }
        cases.append(Case(id: "9.7.1", title: "1000 small text messages back to back, echoed in order",
                          steps: [.send(small.flatMap { ClientFrame.text(bytes: $0) })] + small.map { .expect(.text($0)) }))
        let smallBinary = (0..<1000).map { pattern(16 + $0 % 64) }
        cases.append(Case(id: "9.8.1", title: "1000 small binary messages back to back, echoed in order",
                          steps: [.send(smallBinary.flatMap { ClientFrame.binary($0) })] + smallBinary.map { .expect(.binary($0)) }))
        // Against the 64 KiB limit.
        let atLimit = pattern(limit)
        let over = ClientFrame.binary(pattern(limit + 1))
        cases += [
            Case(id: "x9.1", title: "a message of exactly the limit is echoed", steps: [.send(ClientFrame.binary(atLimit)), .expect(.binary(atLimit))], path: "/limited"),
            Case(id: "x9.2", title: "one byte over the limit: 1009 from the header alone", steps: [.send(Array(over[..<14])), .expect(.close(1009))],
                 ending: .serverClosed, path: "/limited"),
            Case(id: "x9.3", title: "fragments that together exceed the limit: 1009", steps: [
                .send(ClientFrame.binary(pattern(40 << 10), fin: false) + Array(ClientFrame.continuation(pattern(40 << 10), fin: true)[..<8])),
                .expect(.close(1009)),
            ], ending: .serverClosed, path: "/limited"),
            Case(id: "x9.4", title: "text over the limit: 1009", steps: [.send(ClientFrame.text(bytes: asciiPattern(limit + 100))), .expect(.close(1009))],
                 ending: .serverClosed, path: "/limited"),
            Case(id: "x9.5", title: "control frames are not held to the message limit",
                 steps: [.send(ClientFrame.binary(pattern(limit - 10), fin: false) + ClientFrame.ping(pattern(125)) + ClientFrame.continuation(pattern(10), fin: true)),
                         .expect(.pong(pattern(125))), .expect(.binary(Array(pattern(limit - 10)) + pattern(10)))], path: "/limited"),
        ]
        return cases
    }

    static func cases(_ section: String) -> [Case] {
        switch section {
        case "1": section1()
        case "2": section2()
        case "3": section3()
        case "4": section4()
        case "5": section5()
        case "6": section6()
        case "7": section7()
        default: section9()
        }
    }

    /// One section of the table: every row is played, asserted, and listed in a one-line summary.
    @Test(arguments: ["1", "2", "3", "4", "5", "6", "7", "9"])
    func autobahnSection(_ section: String) async throws {
        // Building a section's frames (sections 6 and 9 hold megabytes) is seconds of CPU in a debug
        // build: on a thread of its own, not one of the cooperative pool's two.
        let rows = await onThreadOfItsOwn { Self.cases(section) }
        #expect(Set(rows.map(\.id)).count == rows.count, "ids are unique")
        try await Self.withOwnLoop("ws-section-\(section)", { Self.echoHandler(loop: $0) }) { server, loop in
            var marks: [String] = []
            var failed: [String] = []
            for row in rows {
                let problems = await Self.play(row, port: server.port, loop: loop)
                #expect(problems.isEmpty, "\(row.id) \(row.title): \(problems.joined(separator: "; "))")
                marks.append("\(row.id)\(problems.isEmpty ? "✓" : "✗")")
                if !problems.isEmpty { failed.append(row.id) }
            }
            print("[websocket conformance §\(section)] \(rows.count - failed.count)/\(rows.count) pass"
                  + (failed.isEmpty ? "" : "; FAIL \(failed.joined(separator: " "))") + " — " + marks.joined(separator: " "))
        }
    }

    // MARK: Beyond the table

    /// A server, its sessions and the test's client on an event loop of their own: CPU-bound tests
    /// elsewhere in the run can hold the cooperative pool's few threads for seconds, and a client
    /// starved that long misses the server's deadlines (the 10 s header timeout, a pong, a Close
    /// handshake); on its own loop thread it runs when its socket is ready.
    static func withOwnLoop(_ name: String, _ makeHandler: (EventLoop) -> ClosureHandler,
                            _ body: (HTTPServer, EventLoop) async throws -> Void) async throws {
        let loop = EventLoop(name: name)
        let server = try HTTPServer(address: .tcp(host: "127.0.0.1", port: 0), handler: makeHandler(loop), loop: loop)
        server.start()
        do {
            try await withTaskExecutorPreference(loop) { try await body(server, loop) }
        } catch {
            await server.stop(grace: 0.5)
            throw error
        }
        await server.stop(grace: 0.5)
    }

    /// A client that sends half a frame and vanishes: the session's `receive()` returns nil (1006)
    /// and the server holds no connection a second later.
    @Test func aClientThatVanishesMidMessageEndsTheSession() async throws {
        let probe = WebSocketProbe()
        try await Self.withOwnLoop("ws-vanish", { Self.echoHandler(probe: probe, loop: $0) }) { server, loop in
            let c = try await WebSocketRawClient.connect(port: server.port, loop: loop)
            let frame = ClientFrame.text(String(repeating: "v", count: 100))
            try await c.send(Array(frame[..<(frame.count / 2)]))
            try await Task.sleep(for: .milliseconds(50))
            #expect(server.connectionCount == 1)
            c.close()
            let until = deadline(after: 1)
            while (probe.nilReturns == 0 || server.connectionCount > 0) && monotonicNanos() < until {
                try await Task.sleep(for: .milliseconds(10))
            }
            #expect(probe.nilReturns == 1, "receive() returns nil")
            #expect(probe.codes == [WebSocketCloseCode.abnormal])
            #expect(server.connectionCount == 0, "no connection left open")
        }
    }

    /// A client that does not read: `send` stays suspended once the send buffer and the socket are
    /// full (the session stops well short of the total), and resumes when the client reads.
    @Test func sendWaitsForASlowReader() async throws {
        let probe = WebSocketProbe()
        let total = 1024, size = 32 << 10
        let handler = { (loop: EventLoop) in ClosureHandler { request in
            var config = WebSocket.Configuration()
            config.sendBufferBytes = 256 << 10
            return WebSocketHandshake.response(to: request, configuration: config) { ws in
                guard case .text("go")? = try? await ws.receive() else { return }
                var block = [UInt8](repeating: 0xAB, count: size)
                for i in 0..<total {
                    block[0] = UInt8(i >> 8)
                    block[1] = UInt8(i & 0xFF)
                    guard (try? await ws.send(binary: block)) != nil else { return }
                    probe.framesSent.add(1, ordering: .sequentiallyConsistent)
                }
                while (try? await ws.receive()) != nil {}
            }
        } }
        try await Self.withOwnLoop("ws-backpressure", handler) { server, loop in
            let c = try await WebSocketRawClient.connect(port: server.port, loop: loop)
            defer { c.close() }
            try await c.send(ClientFrame.text("go"))
            // Wait until the count stops moving.
            var last = -1
            var stableSince = monotonicNanos()
            let until = deadline(after: 5)
            while monotonicNanos() < until {
                try await Task.sleep(for: .milliseconds(25))
                let now = probe.sent
                if now != last {
                    last = now
                    stableSince = monotonicNanos()
                } else if monotonicNanos() - stableSince > 300_000_000 {
                    break
                }
            }
            let stalled = probe.sent
            #expect(stalled > 0, "the session sent something")
            #expect(stalled < total / 2, "send must wait while the client reads nothing (sent \(stalled) of \(total))")
            try await Task.sleep(for: .milliseconds(200))
            #expect(probe.sent == stalled, "still suspended")

            for i in 0..<total {
                guard let f = try await c.readFrame(timeout: 10) else {
                    Issue.record("the connection closed after \(i) frames")
                    return
                }
                guard f.opcode == 0x2, f.payload.count == size, Int(f.payload[0]) << 8 | Int(f.payload[1]) == i else {
                    Issue.record("frame \(i) is \(f)")
                    return
                }
            }
            #expect(probe.sent == total, "send resumed when the client read")
            try await c.send(ClientFrame.close(1000))
            let answer = try await c.readFrame(timeout: 5)
            #expect(answer?.opcode == 0x8 && answer?.closeCode == 1000)
            #expect(await c.closedByServer())
        }
    }

    /// `pingInterval`: a silent client is pinged; one that answers stays; one that never answers
    /// is dropped about one more interval later.
    @Test func idleClientsArePingedAndDroppedWhenTheyNeverAnswer() async throws {
        let probe = WebSocketProbe()
        try await Self.withOwnLoop("ws-idle", { Self.echoHandler({ $0.pingInterval = 0.2 }, probe: probe, loop: $0) }) { server, loop in
            // Answers every ping for a second, then still gets its echo.
            let good = try await WebSocketRawClient.connect(port: server.port, loop: loop)
            defer { good.close() }
            var pings = 0
            let until = deadline(after: 1)
            while monotonicNanos() < until {
                do {
                    guard let f = try await good.readFrame(timeout: 0.5) else {
                        Issue.record("a client that answers pings was dropped")
                        return
                    }
                    #expect(f.opcode == 0x9, "\(f)")
                    pings += 1
                    try await good.send(ClientFrame.pong(f.payload))
                } catch WebSocketRawClient.Failure.timedOut {}
            }
            #expect(pings >= 3, "pinged every 0.2 s (\(pings) pings in 1 s)")
            try await good.send(ClientFrame.text("still here"))
            var echoed: WebSocketRawClient.Frame?
            repeat { echoed = try await good.readFrame(timeout: 2) } while echoed?.opcode == 0x9
            #expect(echoed?.opcode == 0x1 && echoed?.payload == Array("still here".utf8))
            try await good.send(ClientFrame.close(1000))
            repeat { echoed = try await good.readFrame(timeout: 2) } while echoed?.opcode == 0x9
            #expect(echoed?.opcode == 0x8 && echoed?.closeCode == 1000)
            let closed = deadline(after: 1)
            while probe.codes.isEmpty && monotonicNanos() < closed { try await Task.sleep(for: .milliseconds(10)) }
            #expect(probe.codes == [WebSocketCloseCode.normal], "the answering client's session ended only by its Close")

            // Never answers: one ping, then the connection ends.
            let silent = try await WebSocketRawClient.connect(port: server.port, loop: loop)
            defer { silent.close() }
            let started = monotonicNanos()
            let ping = try await silent.readFrame(timeout: 2)
            #expect(ping?.opcode == 0x9, "a silent client is pinged")
            #expect(ping?.payload.count ?? 200 <= 125)
            let end = try await silent.readFrame(timeout: 3)
            #expect(end == nil, "a client that never answers is dropped, got \(end.map { "\($0)" } ?? "")")
            let elapsed = Double(monotonicNanos() - started) / 1e9
            #expect(elapsed >= 0.35 && elapsed < 2, "dropped after about two intervals (\(elapsed) s)")
            let settled = deadline(after: 1)
            while probe.codes.count < 2 && monotonicNanos() < settled { try await Task.sleep(for: .milliseconds(10)) }
            #expect(probe.codes == [WebSocketCloseCode.normal, WebSocketCloseCode.abnormal], "the dropped session reports 1006")
        }
    }

    /// A session that closes first (RFC 6455 §7.1.2): its Close goes out with the code and reason,
    /// data the client still sends is discarded, and the client's Close ends the connection; a
    /// client that never answers is dropped after `closeTimeout`.
    @Test func theServerClosesFirst() async throws {
        let probe = WebSocketProbe()
        let handler = { (loop: EventLoop) in ClosureHandler { request in
            var config = WebSocket.Configuration()
            config.closeTimeout = 0.3
            let returnAtOnce = request.path == "/return"
            return WebSocketHandshake.response(to: request, configuration: config) { ws in
                if returnAtOnce {
                    // Returns at once: `finish` closes with 1000 and waits for the peer's Close.
                    try? await ws.send(text: "hello")
                    return
                }
                while let m = try? await ws.receive() {
                    if case .text("bye") = m {
                        ws.close(code: 4000, reason: "bye ✓")
                        #expect(!ws.isOpen)
                        await #expect(throws: WebSocketError.closed) { try await ws.send(text: "too late") }
                    } else {
                        probe.sessions.add(1, ordering: .sequentiallyConsistent)  // counts messages seen after the Close
                    }
                }
                if let code = ws.closeStatus?.code { probe.closeCodes.withLock { $0.append(code) } }
            }
        } }
        try await Self.withOwnLoop("ws-close-first", handler) { server, loop in
            // The client answers the Close.
            let c = try await WebSocketRawClient.connect(port: server.port, loop: loop)
            defer { c.close() }
            try await c.send(ClientFrame.text("bye"))
            let close = try await c.readFrame()
            #expect(close?.opcode == 0x8 && close?.closeCode == 4000 && close.map { Array($0.payload[2...]) } == Array("bye ✓".utf8))
            try await c.send(ClientFrame.text("ignored") + ClientFrame.ping([1]) + ClientFrame.close(4000))
            #expect(await c.closedByServer(), "TCP closes after the client's Close, with nothing echoed or ponged")

            // The client never answers: dropped after closeTimeout.
            let d = try await WebSocketRawClient.connect(port: server.port, loop: loop)
            defer { d.close() }
            try await d.send(ClientFrame.text("bye"))
            #expect(try await d.readFrame()?.closeCode == 4000)
            let started = monotonicNanos()
            #expect(await d.closedByServer(within: 3))
            let waited = Double(monotonicNanos() - started) / 1e9
            #expect(waited >= 0.2 && waited < 2, "closed after closeTimeout (\(waited) s)")

            // A session that just returns.
            let e = try await WebSocketRawClient.connect(port: server.port, path: "/return", loop: loop)
            defer { e.close() }
            #expect(try await e.readFrame()?.payload == Array("hello".utf8))
            #expect(try await e.readFrame()?.closeCode == 1000)
            try await e.send(ClientFrame.close(1000))
            #expect(await e.closedByServer())

            let settled = deadline(after: 1)
            while probe.codes.count < 2 && monotonicNanos() < settled { try await Task.sleep(for: .milliseconds(10)) }
            #expect(probe.codes == [4000, 4000], "closeStatus keeps this side's code")
            #expect(probe.sessions.load(ordering: .sequentiallyConsistent) == 0, "no message is delivered after this side's Close")
        }
    }

    /// `closeStatus` says how each connection ended: the peer's code and reason, 1005 for a Close
    /// without a code, the fault's code for a protocol error.
    @Test func closeStatusReportsHowTheConnectionEnded() async throws {
        let statuses = Mutex<[String]>([])
        let handler = { (loop: EventLoop) in ClosureHandler { request in
            WebSocketHandshake.response(to: request) { ws in
                while (try? await ws.receive()) != nil {}
                let s = ws.closeStatus
                statuses.withLock { $0.append("\(s?.code ?? 0) \(s?.reason ?? "-")") }
            }
        } }
        try await Self.withOwnLoop("ws-close-status", handler) { server, loop in
            for frame in [ClientFrame.close(4001, reason: Array("done".utf8)), ClientFrame.close(nil), ClientFrame.make(0x3, [])] {
                let c = try await WebSocketRawClient.connect(port: server.port, loop: loop)
                try await c.send(frame)
                _ = try await c.readFrame()
                #expect(await c.closedByServer())
                c.close()
            }
            let settled = deadline(after: 1)
            while statuses.withLock({ $0.count }) < 3 && monotonicNanos() < settled { try await Task.sleep(for: .milliseconds(10)) }
            let seen = statuses.withLock { $0 }
            #expect(seen.count == 3)
            #expect(seen.first == "4001 done")
            #expect(seen.dropFirst().first == "1005 ")
            #expect(seen.last?.hasPrefix("1002 ") == true, "\(seen)")
        }
    }

    /// Many tasks sending at once: every frame arrives whole, and each task's frames in its order.
    @Test func concurrentSendersNeverInterleave() async throws {
        let senders = 4, each = 200
        let handler = { (loop: EventLoop) in ClosureHandler { request in
            WebSocketHandshake.response(to: request) { ws in
                guard case .text("go")? = try? await ws.receive() else { return }
                await withTaskGroup(of: Void.self) { group in
                    for t in 0..<senders {
                        group.addTask {
                            for i in 0..<each {
                                let size = 1 + (i * 977) % 70_000
                                var payload = [UInt8](repeating: UInt8(t), count: size)
                                payload[0] = UInt8(t)
                                if size > 2 { payload[1] = UInt8(i >> 8); payload[2] = UInt8(i & 0xFF) }
                                try? await ws.send(binary: payload)
                            }
                        }
                    }
                }
                while (try? await ws.receive()) != nil {}
            }
        } }
        try await Self.withOwnLoop("ws-concurrent", handler) { server, loop in
            let c = try await WebSocketRawClient.connect(port: server.port, loop: loop)
            defer { c.close() }
            try await c.send(ClientFrame.text("go"))
            var next = [Int](repeating: 0, count: senders)
            for _ in 0..<(senders * each) {
                guard let f = try await c.readFrame(), f.opcode == 0x2, let t = f.payload.first.map(Int.init), t < senders else {
                    Issue.record("a frame that is not one of the senders'")
                    return
                }
                let i = next[t]
                let size = 1 + (i * 977) % 70_000
                #expect(f.payload.count == size && f.payload.allSatisfy { $0 == UInt8(t) } == (size <= 2), "sender \(t) message \(i)")
                if size > 2 { #expect(Int(f.payload[1]) << 8 | Int(f.payload[2]) == i, "sender \(t) in order") }
                next[t] += 1
            }
            #expect(next == [Int](repeating: each, count: senders))
        }
    }

    /// A client that never reads is dropped once a write has waited `writeTimeout`, and the
    /// session's `send` fails instead of waiting forever.
    @Test func aClientThatNeverReadsIsDroppedAfterTheWriteTimeout() async throws {
        let failedAfter = Atomic<Int>(-1)
        let handler = { (loop: EventLoop) in ClosureHandler { request in
            var config = WebSocket.Configuration()
            config.writeTimeout = 0.3
            config.sendBufferBytes = 64 << 10
            return WebSocketHandshake.response(to: request, configuration: config) { ws in
                let block = [UInt8](repeating: 0x55, count: 64 << 10)
                for i in 0..<100_000 {
                    do {
                        try await ws.send(binary: block)
                    } catch {
                        failedAfter.store(i, ordering: .sequentiallyConsistent)
                        return
                    }
                }
            }
        } }
        try await Self.withOwnLoop("ws-write-timeout", handler) { server, loop in
            let c = try await WebSocketRawClient.connect(port: server.port, loop: loop)
            defer { c.close() }
            let until = deadline(after: 5)
            while (failedAfter.load(ordering: .sequentiallyConsistent) < 0 || server.connectionCount > 0) && monotonicNanos() < until {
                try await Task.sleep(for: .milliseconds(20))
            }
            let sent = failedAfter.load(ordering: .sequentiallyConsistent)
            #expect(sent > 0 && sent < 1000, "send failed after \(sent) frames")
            #expect(server.connectionCount == 0)
        }
    }

    /// Stopping the server ends open WebSocket sessions: the client gets a Close and end of stream.
    @Test func stoppingTheServerClosesOpenSessions() async throws {
        let loop = EventLoop(name: "ws-stop")
        let server = try HTTPServer(address: .tcp(host: "127.0.0.1", port: 0), handler: Self.echoHandler(loop: loop), loop: loop)
        server.start()
        try await withTaskExecutorPreference(loop) {
            let c = try await WebSocketRawClient.connect(port: server.port, loop: loop)
            defer { c.close() }
            try await c.send(ClientFrame.text("hi"))
            #expect(try await c.readFrame()?.payload == Array("hi".utf8))
            let started = monotonicNanos()
            await server.stop(grace: 0.2)
            let f = try await c.readFrame(timeout: 3)
            #expect(f?.opcode == 0x8, "a Close before the end: \(f.map { "\($0)" } ?? "end of stream")")
            #expect(f.map { Array($0.payload.prefix(2)) } == [0x03, 0xE9], "1001: the server is going away")
            #expect(await c.closedByServer())
            #expect(Double(monotonicNanos() - started) / 1e9 < 2.5)
            #expect(server.connectionCount == 0)
        }
    }

    /// The HTTP side of the hand-over: a bad handshake is answered as HTTP and the connection
    /// stays HTTP.
    @Test func aBadHandshakeIsAnsweredAsHTTP() async throws {
        try await Self.withOwnLoop("ws-bad-handshake", { Self.echoHandler(loop: $0) }) { server, _ in
            let c = try await RawClient.connect(port: server.port)
            try await c.send("GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n")
            let r = try await c.readResponse()
            #expect(r.status == 426)
            #expect(r.headers["sec-websocket-version"] == "13")
            try await c.send("GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n")
            #expect(try await c.readResponse().status == 400)
        }
    }

    /// Bytes the client sends right behind the handshake (in the same packet) are the first frame.
    @Test func aFrameInTheHandshakePacketIsRead() async throws {
        try await Self.withOwnLoop("ws-early-frame", { Self.echoHandler(loop: $0) }) { server, loop in
            let conn = try await Connection.connect(to: .tcp(host: "127.0.0.1", port: server.port), loop: loop)
            let c = WebSocketRawClient(connection: conn)
            defer { c.close() }
            try await c.send(Array(("GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                                    + "Sec-WebSocket-Key: \(WebSocketRawClient.sampleKey)\r\nSec-WebSocket-Version: 13\r\n\r\n").utf8) + ClientFrame.text("early"))
            // Skip the 101 head.
            var head: [UInt8] = []
            while !head.ends(with: [13, 10, 13, 10]) {
                if c.input.readableCount == 0 {
                    guard try await conn.read(into: c.input, deadline: deadline(after: 5)) > 0 else { break }
                }
                head.append(c.input.readable[0])
                c.input.consume(1)
            }
            #expect(String(decoding: head, as: UTF8.self).hasPrefix("HTTP/1.1 101"))
            let f = try await c.readFrame(timeout: 5)
            #expect(f?.opcode == 0x1 && f?.payload == Array("early".utf8))
        }
    }
}

extension Array where Element == UInt8 {
    fileprivate func ends(with suffix: [UInt8]) -> Bool { count >= suffix.count && Array(self[(count - suffix.count)...]) == suffix }
}
