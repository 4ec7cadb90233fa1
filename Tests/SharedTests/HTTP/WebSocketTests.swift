import Testing
@testable import Shared

private func hex(_ bytes: [UInt8]) -> String {
    bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
}

private func utf8(_ s: String) -> [UInt8] { Array(s.utf8) }

/// SHA-1 against FIPS 180's own examples (and the padding edges between them).
@Suite struct SHA1Tests {
    @Test(arguments: [
        ("abc", "a9993e364706816aba3e25717850c26c9cd0d89d"),
        ("", "da39a3ee5e6b4b0d3255bfef95601890afd80709"),
        ("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", "84983e441c3bd26ebaae4aa1f95129e5e54670f1"),
        ("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
         "a49b2446a02c645bf419f995b67091253a04a259"),
        ("The quick brown fox jumps over the lazy dog", "2fd4e1c67a2d28fced849ee1bb76e7391b93eb12"),
    ])
    func fipsVectors(_ vector: (String, String)) {
        #expect(hex(SHA1.digest(utf8(vector.0))) == vector.1, "SHA-1(\"\(vector.0)\")")
    }

    @Test func oneMillionAs() {
        var s = SHA1()
        let block = [UInt8](repeating: UInt8(ascii: "a"), count: 1000)
        for _ in 0..<1000 { s.update(block) }
        #expect(hex(s.finish()) == "34aa973cd4c4daa4f61eeb2bdbad27316534016f")
    }

    /// Lengths around the 55/56/64-byte padding edges, fed in two pieces split everywhere: the digest
    /// must not depend on how the bytes arrive.
    @Test func incrementalUpdatesMatchOneShot() {
        for length in [0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 128] {
            let bytes = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
            let whole = SHA1.digest(bytes)
            for split in 0...length {
                var s = SHA1()
                s.update(bytes[..<split])
                s.update(bytes[split...])
                #expect(s.finish() == whole, "length \(length) split at \(split)")
            }
        }
    }
}

/// Base64 against RFC 4648 §10, both ways, and the strict decoder's refusals.
@Suite struct Base64Tests {
    static let vectors = [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("fooba", "Zm9vYmE="), ("foobar", "Zm9vYmFy")]

    @Test(arguments: vectors)
    func rfc4648Vectors(_ v: (String, String)) {
        #expect(Base64.encode(utf8(v.0)) == v.1)
        #expect(Base64.decode(v.1) == utf8(v.0))
    }

    @Test func everyByteAndLengthRoundTrips() {
        let all = (0...255).map { UInt8($0) }
        #expect(Base64.decode(Base64.encode(all)) == all)
        for n in 0..<40 {
            let bytes = (0..<n).map { UInt8(truncatingIfNeeded: 251 &- $0 &* 13) }
            let text = Base64.encode(bytes)
            #expect(text.utf8.count == (n + 2) / 3 * 4)
            #expect(Base64.decode(text) == bytes, "length \(n)")
        }
    }

    @Test(arguments: [
        "Zg=",          // length not a multiple of 4
        "Zg",           // unpadded
        "Zh==",         // non-zero bits under the padding (RFC 4648 §3.5)
        "Zm9=",         // the same with one '='
        "Zg==Zg==",     // padding before the end
        "Z===",         // three '='
        "====",
        "Zg=a",         // data after padding
        "Zm 9",         // a space
        "Zm9v\n",       // a newline
        "Zm-_",         // the URL-safe alphabet (§5) is not this one
        "Zm9vé===",     // a non-ASCII byte
    ])
    func nonCanonicalInputIsRejected(_ text: String) {
        #expect(Base64.decode(text) == nil, "\(text.debugDescription)")
    }
}

/// The opening handshake (RFC 6455 §4.2), from raw request bytes.
@Suite struct WebSocketHandshakeTests {
    static let good = "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"

    func head(_ text: String) -> HTTPRequestHead? {
        let bytes = utf8(text)
        if case .complete(let head, _) = bytes.withUnsafeBytes({ HTTPParser.parseRequestHead($0, limits: HTTPLimits()) }) { return head }
        return nil
    }

    func status(_ text: String) -> Int? {
        guard let head = head(text) else { return -1 }
        if case .failure(let e) = WebSocketHandshake.check(head) { return e.status.code }
        return nil
    }

    @Test func acceptValueOfTheRFCSampleKey() {
        #expect(WebSocketHandshake.accept(key: "dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    }

    @Test func aValidHandshakeIsAccepted() throws {
        let h = try #require(head(Self.good))
        #expect(WebSocketHandshake.isUpgradeRequest(h))
        guard case .success(let key) = WebSocketHandshake.check(h) else {
            Issue.record("the RFC's sample handshake was refused")
            return
        }
        #expect(key == "dGhlIHNhbXBsZSBub25jZQ==")
        // Token lists and case do not matter (RFC 6455 §4.2.1: Connection includes "Upgrade").
        let variant = "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: WebSocket\r\nConnection: keep-alive, upgrade\r\nSec-WebSocket-Key:  dGhlIHNhbXBsZSBub25jZQ== \r\nSec-WebSocket-Version: 13\r\n\r\n"
        #expect(status(variant) == nil)
    }

    @Test func theResponseIs101WithTheAcceptValueAndAnUpgradeBody() throws {
        let h = try #require(head(Self.good))
        let r = WebSocketHandshake.response(to: HTTPRequest(head: h, body: HTTPRequestBody(bytes: []))) { _ in }
        #expect(r.status == .switchingProtocols)
        #expect(r.headers["sec-websocket-accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        #expect(r.headers["upgrade"] == "websocket")
        guard case .upgrade = r.body else {
            Issue.record("a 101 must hand the connection over")
            return
        }
    }

    @Test func anUnsupportedVersionGets426NamingVersion13() throws {
        let h = try #require(head(Self.good.replacing("Version: 13", with: "Version: 8")))
        let r = WebSocketHandshake.response(to: HTTPRequest(head: h, body: HTTPRequestBody(bytes: []))) { _ in }
        #expect(r.status.code == 426)
        #expect(r.headers["sec-websocket-version"] == "13")
    }

    static let refusals: [(String, String, Int)] = [
        ("a POST", good.replacing("GET /ws", with: "POST /ws"), 400),
        ("HTTP/1.0", good.replacing("HTTP/1.1", with: "HTTP/1.0"), 400),
        ("no Upgrade header", good.replacing("Upgrade: websocket\r\n", with: ""), 426),
        ("Upgrade to another protocol", good.replacing("Upgrade: websocket", with: "Upgrade: h2c"), 426),
        ("no Connection: Upgrade", good.replacing("Connection: Upgrade", with: "Connection: keep-alive"), 400),
        ("version 8", good.replacing("Version: 13", with: "Version: 8"), 426),
        ("no version", good.replacing("Sec-WebSocket-Version: 13\r\n", with: ""), 426),
        ("two versions", good.replacing("Version: 13", with: "Version: 13\r\nSec-WebSocket-Version: 8"), 426),
        ("no key", good.replacing("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", with: ""), 400),
        ("a key of 15 bytes", good.replacing("dGhlIHNhbXBsZSBub25jZQ==", with: "dGhlIHNhbXBsZSBub25j"), 400),
        ("a key of 17 bytes", good.replacing("dGhlIHNhbXBsZSBub25jZQ==", with: "dGhlIHNhbXBsZSBub25jZSE="), 400),
        ("a key that is not base64", good.replacing("dGhlIHNhbXBsZSBub25jZQ==", with: "not base64 at all!!!!!!!"), 400),
        ("two keys", good.replacing("Sec-WebSocket-Version", with: "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version"), 400),
        ("a body", good.replacing("Host: a\r\n", with: "Host: a\r\nContent-Length: 5\r\n"), 400),
        ("a chunked body", good.replacing("Host: a\r\n", with: "Host: a\r\nTransfer-Encoding: chunked\r\n"), 400),
    ]

    @Test(arguments: refusals)
    func aBadHandshakeIsRefused(_ c: (String, String, Int)) {
        #expect(status(c.1) == c.2, "\(c.0)")
    }

    @Test func anEmptyContentLengthIsNoBody() {
        #expect(status(Self.good.replacing("Host: a\r\n", with: "Host: a\r\nContent-Length: 0\r\n")) == nil)
    }
}

/// The incremental UTF-8 validator (RFC 3629), checked against the standard library's decoder too.
@Suite struct UTF8ValidatorTests {
    static let texts = ["Hello-µ@ßöäüàá-UTF-8!!", "κόσμε", "日本語のテキスト", "Привет, мир", "𝄞 clef, 😀 face, 🇺🇳 flag",
                        "mixed: a ß 中 𐍈 z", String(repeating: "ascii run ", count: 5) + "€"]

    @Test(arguments: texts)
    func validTextSplitAtEveryByteBoundary(_ text: String) {
        let bytes = utf8(text)
        #expect(UTF8Validator.isValid(bytes))
        for split in 0...bytes.count {
            var v = UTF8Validator()
            let prefixOK = v.feed(Array(bytes[..<split]))
            #expect(prefixOK, "\(text) prefix \(split)")
            let suffixOK = v.feed(Array(bytes[split...]))
            #expect(suffixOK, "\(text) suffix \(split)")
            #expect(v.isComplete, "\(text) split at \(split)")
        }
        var v = UTF8Validator()
        for (i, b) in bytes.enumerated() {
            let byteOK = v.feed([b])
            #expect(byteOK, "\(text) byte \(i)")
            // Complete exactly when the next byte starts a character.
            let boundary = i + 1 == bytes.count || bytes[i + 1] & 0xC0 != 0x80
            #expect(v.isComplete == boundary, "\(text) after byte \(i)")
        }
    }

    static let invalid: [(String, [UInt8])] = [
        ("overlong NUL", [0xC0, 0x80]), ("overlong '/'", [0xC0, 0xAF]), ("overlong 2-byte max", [0xC1, 0xBF]),
        ("overlong 3-byte", [0xE0, 0x80, 0xAF]), ("overlong 3-byte max", [0xE0, 0x9F, 0xBF]),
        ("overlong 4-byte", [0xF0, 0x80, 0x80, 0xAF]), ("overlong 4-byte max", [0xF0, 0x8F, 0xBF, 0xBF]),
        ("surrogate U+D800", [0xED, 0xA0, 0x80]), ("surrogate U+DBFF", [0xED, 0xAF, 0xBF]), ("surrogate U+DFFF", [0xED, 0xBF, 0xBF]),
        ("paired surrogates", [0xED, 0xA0, 0x80, 0xED, 0xB0, 0x80]),
        ("U+110000", [0xF4, 0x90, 0x80, 0x80]), ("lead F5", [0xF5, 0x80, 0x80, 0x80]), ("lead F7", [0xF7, 0xBF, 0xBF, 0xBF]),
        ("5-byte form", [0xF8, 0x88, 0x80, 0x80, 0x80]), ("6-byte form", [0xFC, 0x84, 0x80, 0x80, 0x80, 0x80]),
        ("FE", [0xFE]), ("FF", [0xFF]), ("lone continuation", [0x80]), ("lone continuation BF", [0xBF]),
        ("lead then ASCII", [0xC2, 0x41]), ("3-byte cut by ASCII", [0xE2, 0x82, 0x41]), ("lead then lead", [0xE2, 0xE2, 0x82, 0xAC]),
    ]

    @Test(arguments: invalid)
    func invalidSequencesFailAndStayFailed(_ c: (String, [UInt8])) {
        #expect(!UTF8Validator.isValid(c.1), "\(c.0)")
        var v = UTF8Validator()
        var ok = v.feed(utf8("valid prefix "))
        for b in c.1 where ok { ok = v.feed([b]) }
        #expect(!ok, "\(c.0) byte by byte")
        let afterASCII = v.feed(utf8("a"))
        #expect(!afterASCII, "\(c.0): once invalid, stays invalid")
        let afterNothing = v.feed([])
        #expect(!afterNothing, "\(c.0): once invalid, stays invalid")
        #expect(!v.isComplete, "\(c.0): an invalid stream is not complete")
    }

    @Test func validEdgesAreAccepted() {
        for bytes: [UInt8] in [[0x00], [0x7F], [0xC2, 0x80], [0xDF, 0xBF], [0xE0, 0xA0, 0x80], [0xED, 0x9F, 0xBF], [0xEE, 0x80, 0x80],
                               [0xEF, 0xBF, 0xBF], [0xEF, 0xBF, 0xBE], [0xF0, 0x90, 0x80, 0x80], [0xF4, 0x8F, 0xBF, 0xBF]] {
            #expect(UTF8Validator.isValid(bytes), "\(hex(bytes))")
        }
    }

    @Test func truncatedSequencesAreIncompleteNotInvalid() {
        for bytes: [UInt8] in [[0xC2], [0xE0, 0xA0], [0xE2, 0x82], [0xF0, 0x90], [0xF0, 0x90, 0x80], [0xF4, 0x8F, 0xBF]] {
            var v = UTF8Validator()
            let prefixOK = v.feed(bytes)
            #expect(prefixOK, "\(hex(bytes)) is a valid prefix")
            #expect(!v.isComplete, "\(hex(bytes)) is not complete")
            #expect(!UTF8Validator.isValid(bytes), "\(hex(bytes))")
        }
    }

    /// The eight-bytes-at-a-time ASCII skip must not step over a bad (or a good) non-ASCII byte
    /// wherever it falls.
    @Test func nonASCIIAtEveryOffsetOfAnASCIIRun() {
        for k in 0..<40 {
            var bad = [UInt8](repeating: 0x61, count: 40)
            bad[k] = 0xFF
            #expect(!UTF8Validator.isValid(bad), "0xFF at \(k)")
            var good = [UInt8](repeating: 0x61, count: 40)
            good.insert(contentsOf: [0xC3, 0xA9], at: k)
            #expect(UTF8Validator.isValid(good), "é at \(k)")
            var cut = [UInt8](repeating: 0x61, count: 40)
            cut.insert(0xC3, at: k)
            #expect(!UTF8Validator.isValid(cut), "lone lead at \(k)")
        }
    }

    /// Every 1- and 2-byte input, and 3- and 4-byte inputs over every lead and second byte (where
    /// the narrowed ranges after E0, ED, F0 and F4 live) with representative later bytes, agree with
    /// the standard library's validating decoder. On a thread of its own: a long synchronous loop would
    /// hold one of the cooperative pool's threads from the socket tests running alongside.
    @Test func agreesWithTheStandardLibrary() async {
        let disagreements = await onThreadOfItsOwn { Self.disagreementsWithTheStandardLibrary() }
        #expect(disagreements.isEmpty, "\(disagreements.prefix(20))")
    }

    static func disagreementsWithTheStandardLibrary() -> [String] {
        func agree(_ bytes: [UInt8]) -> Bool { UTF8Validator.isValid(bytes) == (String(validating: bytes, as: UTF8.self) != nil) }
        var disagreements: [String] = []
        let later: [UInt8] = [0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xFF]
        // Every second byte after the leads whose ranges differ (C0/C1 overlong, E0 and F0 narrowed
        // below, ED and F4 above, F5 and up never valid) and after one ordinary lead of each length;
        // the representative bytes after every other lead.
        let exhaustive: Set<Int> = [0x41, 0x80, 0xC0, 0xC1, 0xC2, 0xDF, 0xE0, 0xE1, 0xED, 0xEE, 0xEF, 0xF0, 0xF1, 0xF4, 0xF5, 0xFF]
        for a in 0...255 {
            if !agree([UInt8(a)]) { disagreements.append(hex([UInt8(a)])) }
            let seconds: [UInt8] = exhaustive.contains(a) ? Array(0...255) : later
            for b in seconds {
                if !agree([UInt8(a), b]) { disagreements.append(hex([UInt8(a), b])) }
                guard a >= 0xE0 else { continue }
                for c in later where !agree([UInt8(a), b, c]) { disagreements.append(hex([UInt8(a), b, c])) }
                guard a >= 0xF0 else { continue }
                for c in later { for d in later where !agree([UInt8(a), b, c, d]) { disagreements.append(hex([UInt8(a), b, c, d])) } }
            }
        }
        return disagreements
    }
}

/// The frame encoder: RFC 6455 §5.7's examples byte-exact, and the length forms.
@Suite struct WebSocketFrameTests {
    @Test func rfcExamples() {
        #expect(WebSocketFrame.encode(.text, utf8("Hello")) == [0x81, 0x05, 0x48, 0x65, 0x6C, 0x6C, 0x6F])
        #expect(WebSocketFrame.encode(.text, utf8("Hello"), mask: [0x37, 0xFA, 0x21, 0x3D])
            == [0x81, 0x85, 0x37, 0xFA, 0x21, 0x3D, 0x7F, 0x9F, 0x4D, 0x51, 0x58])
        #expect(WebSocketFrame.encode(.text, utf8("Hel"), fin: false) == [0x01, 0x03, 0x48, 0x65, 0x6C])
        #expect(WebSocketFrame.encode(.continuation, utf8("lo")) == [0x80, 0x02, 0x6C, 0x6F])
        #expect(WebSocketFrame.encode(.ping, utf8("Hello")) == [0x89, 0x05, 0x48, 0x65, 0x6C, 0x6C, 0x6F])
        #expect(WebSocketFrame.encode(.pong, utf8("Hello"), mask: [0x37, 0xFA, 0x21, 0x3D])
            == [0x8A, 0x85, 0x37, 0xFA, 0x21, 0x3D, 0x7F, 0x9F, 0x4D, 0x51, 0x58])
        #expect(Array(WebSocketFrame.encode(.binary, [UInt8](repeating: 0, count: 256)).prefix(4)) == [0x82, 0x7E, 0x01, 0x00])
        #expect(Array(WebSocketFrame.encode(.binary, [UInt8](repeating: 0, count: 65536)).prefix(10))
            == [0x82, 0x7F, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00])
    }

    @Test(arguments: [0, 1, 125, 126, 127, 128, 65535, 65536, 70000])
    func lengthsUseTheMinimalFormAndMatchTheTestEncoder(_ n: Int) {
        let payload = (0..<n).map { UInt8(truncatingIfNeeded: $0) }
        let frame = WebSocketFrame.encode(.binary, payload)
        let header = n < 126 ? 2 : n < 65536 ? 4 : 10
        #expect(frame.count == header + n)
        #expect(frame == ClientFrame.make(0x2, payload, mask: nil))
        #expect(WebSocketFrame.encode(.binary, payload, mask: ClientFrame.key) == ClientFrame.make(0x2, payload))
    }

    @Test func closePayloadCutsTheReasonAtACharacterBoundary() {
        #expect(WebSocketFrame.closePayload(code: 1000, reason: "bye") == [0x03, 0xE8] + utf8("bye"))
        let long = WebSocketFrame.closePayload(code: 1002, reason: String(repeating: "é", count: 70))
        #expect(long.count == 124)  // 61 two-byte characters fit in 123 bytes
        #expect(UTF8Validator.isValid(Array(long[2...])))
        #expect(WebSocketFrame.closePayload(code: 1002, reason: String(repeating: "x", count: 200)).count == 125)
    }
}

/// The receive state machine from raw bytes: the same events however the bytes are split, and
/// every fault mapped to its close code.
@Suite struct WebSocketReaderTests {
    typealias Event = WebSocketReader.Event

    struct Run: Equatable, CustomStringConvertible {
        var events: [Event] = []
        var failure: UInt16?
        /// Input bytes fed but not consumed at the end.
        var leftover = 0
        var description: String { "events \(events.map { "\($0)".prefix(60) }), failure \(failure.map(String.init) ?? "none"), leftover \(leftover)" }
    }

    /// Feeds `bytes` `chunk` at a time (nil: all at once), keeping what the reader did not consume and
    /// calling again after each event, as `WebSocket.receive` does.
    static func feed(_ bytes: [UInt8], chunk: Int? = nil, maxMessageBytes: Int = 16 << 20, requireMask: Bool = true) -> Run {
        var reader = WebSocketReader(maxMessageBytes: maxMessageBytes, requireMask: requireMask)
        var run = Run()
        var pending: [UInt8] = []
        var i = 0
        let step = chunk ?? max(bytes.count, 1)
        while i < bytes.count {
            let end = min(i + step, bytes.count)
            pending += bytes[i..<end]
            i = end
            while true {
                let result = pending.withUnsafeBytes { reader.next($0) }
                switch result {
                case .event(let e, let consumed):
                    #expect(consumed > 0 && consumed <= pending.count, "an event must consume what it used")
                    run.events.append(e)
                    pending.removeFirst(consumed)
                    continue
                case .needMore(let consumed):
                    #expect(consumed <= pending.count)
                    pending.removeFirst(consumed)
                case .failure(let error):
                    run.failure = error.code
                    return run
                }
                break
            }
        }
        run.leftover = pending.count
        return run
    }

    /// Feeds one way and the other and requires both to agree; returns the all-at-once run.
    static func feedBothWays(_ bytes: [UInt8], maxMessageBytes: Int = 16 << 20, requireMask: Bool = true,
                             sourceLocation: SourceLocation = #_sourceLocation) -> Run {
        let whole = feed(bytes, maxMessageBytes: maxMessageBytes, requireMask: requireMask)
        let bytewise = feed(bytes, chunk: 1, maxMessageBytes: maxMessageBytes, requireMask: requireMask)
        let sevens = feed(bytes, chunk: 7, maxMessageBytes: maxMessageBytes, requireMask: requireMask)
        #expect(bytewise == whole, "byte by byte differs from all at once", sourceLocation: sourceLocation)
        #expect(sevens == whole, "7 bytes at a time differs from all at once", sourceLocation: sourceLocation)
        return whole
    }

    static let big126 = (0..<126).map { UInt8(truncatingIfNeeded: $0 * 3) }
    static let big65535 = (0..<65535).map { UInt8(truncatingIfNeeded: $0 * 7) }
    static let big65536 = (0..<65536).map { UInt8(truncatingIfNeeded: $0 * 11) }

    static let sequences: [(String, [UInt8], [Event])] = [
        ("masked text (RFC 6455 §5.7)", [0x81, 0x85, 0x37, 0xFA, 0x21, 0x3D, 0x7F, 0x9F, 0x4D, 0x51, 0x58], [.message(.text, utf8("Hello"))]),
        ("binary", ClientFrame.binary([0, 1, 2, 0xFF]), [.message(.binary, [0, 1, 2, 0xFF])]),
        ("fragmented text with a ping between fragments",
         ClientFrame.text("Hel", fin: false) + ClientFrame.ping(utf8("p")) + ClientFrame.continuation("lo ", fin: false)
            + ClientFrame.continuation("world", fin: true),
         [.ping(utf8("p")), .message(.text, utf8("Hello world"))]),
        ("fragmented binary with a pong and a ping between", ClientFrame.binary([1], fin: false) + ClientFrame.pong([9]) + ClientFrame.continuation([2], fin: false)
            + ClientFrame.ping() + ClientFrame.continuation([3], fin: true),
         [.pong([9]), .ping([]), .message(.binary, [1, 2, 3])]),
        ("16-bit length 126", ClientFrame.binary(big126), [.message(.binary, big126)]),
        ("16-bit length 65535", ClientFrame.binary(big65535), [.message(.binary, big65535)]),
        ("64-bit length 65536", ClientFrame.binary(big65536), [.message(.binary, big65536)]),
        ("empty frames", ClientFrame.text("") + ClientFrame.binary([]) + ClientFrame.ping() + ClientFrame.pong()
            + ClientFrame.text("", fin: false) + ClientFrame.continuation("", fin: false) + ClientFrame.continuation("", fin: true),
         [.message(.text, []), .message(.binary, []), .ping([]), .pong([]), .message(.text, [])]),
        ("a text split inside a character across fragments", ClientFrame.text(bytes: [0xCE], fin: false) + ClientFrame.continuation([0xBA, 0xE1, 0xBD], fin: false)
            + ClientFrame.continuation([0xB9], fin: true),
         [.message(.text, [0xCE, 0xBA, 0xE1, 0xBD, 0xB9])]),
        ("close without a code", ClientFrame.close(nil), [.close(code: nil, reason: "")]),
        ("close with a code", ClientFrame.close(1000), [.close(code: 1000, reason: "")]),
        ("close with a code and a reason", ClientFrame.close(1001, reason: utf8("gone ✓")), [.close(code: 1001, reason: "gone ✓")]),
        ("a 125-byte ping", ClientFrame.ping([UInt8](repeating: 0xFE, count: 125)), [.ping([UInt8](repeating: 0xFE, count: 125))]),
    ]

    /// Fed on a thread of its own: a second of CPU in a debug build, which on the cooperative pool
    /// would hold one of its two threads from the socket tests running alongside.
    @Test func everySequenceSplitEveryWayGivesTheSameEvents() async {
        let runs = await onThreadOfItsOwn {
            Self.sequences.map { Self.feedBothWays($0.1) } + [Self.feedBothWays(Self.sequences.flatMap(\.1))]
        }
        for ((name, _, expected), run) in zip(Self.sequences, runs) {
            #expect(run == Run(events: expected), "\(name)")
        }
        // All of them back to back, as one stream.
        #expect(runs.last == Run(events: Self.sequences.flatMap(\.2)))
    }

    @Test func unmaskedFramesAreReadWhenMaskingIsNotRequired() {
        let fragmented: [UInt8] = [0x01, 0x03, 0x48, 0x65, 0x6C, 0x80, 0x02, 0x6C, 0x6F]
        #expect(Self.feedBothWays(fragmented, requireMask: false) == Run(events: [.message(.text, utf8("Hello"))]))
        #expect(Self.feedBothWays([0x89, 0x05, 0x48, 0x65, 0x6C, 0x6C, 0x6F], requireMask: false) == Run(events: [.ping(utf8("Hello"))]))
    }

    @Test func aPartialFrameIsKeptUntilTheRestArrives() {
        var reader = WebSocketReader()
        let frame = ClientFrame.text("Hello")
        let first = Array(frame[..<4])
        // A header cut in the masking key consumes nothing.
        let partial = first.withUnsafeBytes { reader.next($0) }
        #expect(partial == .needMore(consumed: 0))
        let rest = frame
        let whole = rest.withUnsafeBytes { reader.next($0) }
        #expect(whole == .event(.message(.text, utf8("Hello")), consumed: frame.count))
        #expect(!reader.isInsideMessage)
    }

    // MARK: Faults

    static let p = WebSocketCloseCode.protocolError, u = WebSocketCloseCode.invalidPayload, big = WebSocketCloseCode.messageTooBig

    static let faults: [(String, [UInt8], UInt16)] = {
        var f: [(String, [UInt8], UInt16)] = [
            ("RSV1", ClientFrame.text("a", rsv: 4), p), ("RSV2", ClientFrame.text("a", rsv: 2), p), ("RSV3", ClientFrame.text("a", rsv: 1), p),
            ("RSV on a ping", ClientFrame.ping([], rsv: 7), p),
            ("RSV after a good message", ClientFrame.text("ok") + ClientFrame.binary([1], rsv: 5), p),
            ("an unmasked client frame", ClientFrame.make(0x1, utf8("Hello"), mask: nil), p),
            ("an unmasked close", ClientFrame.make(0x8, [], mask: nil), p),
            ("a fragmented ping", ClientFrame.ping([1], fin: false) + ClientFrame.continuation([2], fin: true), p),
            ("a fragmented pong", ClientFrame.pong([1], fin: false), p),
            ("a fragmented close", ClientFrame.make(0x8, [0x03, 0xE8], fin: false), p),
            ("a 126-byte ping", ClientFrame.ping([UInt8](repeating: 0, count: 126)), p),
            ("a 126-byte close", ClientFrame.close(1000, reason: [UInt8](repeating: 0x61, count: 124)), p),
            ("a continuation with no message (FIN)", ClientFrame.continuation("a", fin: true), p),
            ("a continuation with no message (no FIN)", ClientFrame.continuation("a", fin: false), p),
            ("a continuation after a finished message", ClientFrame.text("a") + ClientFrame.continuation("b", fin: true), p),
            ("a text frame inside a fragmented message", ClientFrame.text("a", fin: false) + ClientFrame.text("b"), p),
            ("a binary frame inside a fragmented text", ClientFrame.text("a", fin: false) + ClientFrame.binary([1], fin: false), p),
            ("invalid UTF-8 in a text frame", ClientFrame.text(bytes: utf8("κόσμε") + [0xED, 0xA0, 0x80] + utf8("edited")), u),
            ("invalid UTF-8 in a first fragment", ClientFrame.text(bytes: [0x61, 0xFF], fin: false), u),
            ("invalid UTF-8 across fragments", ClientFrame.text(bytes: utf8("κόσμε") + [0xF4], fin: false) + ClientFrame.continuation([0x90], fin: false), u),
            ("a text ending inside a character", ClientFrame.text(bytes: utf8("ab") + [0xCE]), u),
            ("a fragmented text ending inside a character", ClientFrame.text(bytes: [0xE2, 0x82], fin: false) + ClientFrame.continuation([], fin: true), u),
            ("a 1-byte close payload", ClientFrame.make(0x8, [0x03]), p),
            ("a close reason that is not UTF-8", ClientFrame.close(1000, reason: [0xCE, 0xBA, 0xFF]), u),
            ("a close reason ending inside a character", ClientFrame.close(1000, reason: [0xCE]), u),
            ("a 64-bit length with its top bit set", [0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1] + ClientFrame.key, p),
        ]
        for op: UInt8 in [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
            f.append(("reserved opcode 0x\(String(op, radix: 16))", ClientFrame.make(op, [1, 2]), p))
        }
        for code: UInt16 in [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535] {
            f.append(("close code \(code)", ClientFrame.close(code), p))
        }
        return f
    }()

    @Test(arguments: faults)
    func aFaultFailsWithItsCode(_ c: (String, [UInt8], UInt16)) {
        let run = Self.feedBothWays(c.1)
        #expect(run.failure == c.2, "\(c.0): \(run)")
    }

    @Test(arguments: [UInt16(1000), 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999])
    func validCloseCodesAreAccepted(_ code: UInt16) {
        #expect(Self.feedBothWays(ClientFrame.close(code, reason: utf8("ok"))) == Run(events: [.close(code: code, reason: "ok")]))
    }

    @Test func theEventsBeforeAFaultAreDelivered() {
        let run = Self.feedBothWays(ClientFrame.text("first") + ClientFrame.ping([7]) + ClientFrame.make(0x3, []))
        #expect(run.events == [.message(.text, utf8("first")), .ping([7])])
        #expect(run.failure == 1002)
    }

    /// RFC 6455 §8.1: a text message fails at its first invalid byte, not at its end: here before
    /// the rest of the frame, and the rest of the message, have arrived.
    @Test func invalidUTF8FailsAtTheFirstBadByte() {
        let frame = ClientFrame.text(bytes: utf8("κόσμε") + [0xF4, 0x90, 0x80, 0x80] + utf8("edited"))
        let header = 6
        let badAt = header + utf8("κόσμε").count + 1  // 0x90 after 0xF4 makes it > U+10FFFF
        let upToLead = Array(frame[..<badAt])
        #expect(Self.feed(upToLead).failure == nil, "a valid prefix must not fail")
        #expect(Self.feed(upToLead, chunk: 1).failure == nil)
        let upToBad = Array(frame[...badAt])
        #expect(Self.feed(upToBad).failure == Self.u)
        #expect(Self.feed(upToBad, chunk: 1).failure == Self.u)

        let firstFragment = ClientFrame.text(bytes: utf8("κόσμε") + [0xF4, 0x90], fin: false)
        #expect(Self.feed(firstFragment).failure == Self.u, "the first fragment alone fails")
    }

    @Test func aMessageOverTheLimitFailsFromItsHeader() {
        // 101 bytes against a limit of 100: the 2-byte header and the key are enough.
        let frame = ClientFrame.text(String(repeating: "x", count: 101))
        #expect(Self.feed(Array(frame[..<6]), maxMessageBytes: 100).failure == Self.big)
        #expect(Self.feed(Array(frame[..<6]), chunk: 1, maxMessageBytes: 100).failure == Self.big)
        #expect(Self.feedBothWays(frame, maxMessageBytes: 100).failure == Self.big)
        // A 64-bit length of 2^62: no allocation, just the code.
        let huge: [UInt8] = [0x82, 0xFF, 0x40, 0, 0, 0, 0, 0, 0, 0] + ClientFrame.key
        #expect(Self.feed(huge, maxMessageBytes: 100).failure == Self.big)
        #expect(Self.feed(huge).failure == Self.big)
        // Exactly the limit is fine.
        let exact = Self.feedBothWays(ClientFrame.text(String(repeating: "y", count: 100)), maxMessageBytes: 100)
        #expect(exact == Run(events: [.message(.text, [UInt8](repeating: 0x79, count: 100))]))
    }

    @Test func fragmentsThatTogetherExceedTheLimitFail() {
        let parts = ClientFrame.binary([UInt8](repeating: 1, count: 60), fin: false) + ClientFrame.ping()
        let over = parts + ClientFrame.continuation([UInt8](repeating: 2, count: 41), fin: true)
        let run = Self.feedBothWays(over, maxMessageBytes: 100)
        #expect(run.failure == Self.big)
        #expect(run.events == [.ping([])])
        // The second fragment's header is enough to know.
        let header = Array(ClientFrame.continuation([UInt8](repeating: 2, count: 41), fin: true)[..<6])
        #expect(Self.feed(parts + header, maxMessageBytes: 100).failure == Self.big)
        let fits = parts + ClientFrame.continuation([UInt8](repeating: 2, count: 40), fin: true)
        #expect(Self.feedBothWays(fits, maxMessageBytes: 100).events == [.ping([]), .message(.binary, [UInt8](repeating: 1, count: 60) + [UInt8](repeating: 2, count: 40))])
        // Control frames do not count toward a message's size.
        #expect(Self.feedBothWays(ClientFrame.ping([UInt8](repeating: 0, count: 125)), maxMessageBytes: 10) == Run(events: [.ping([UInt8](repeating: 0, count: 125))]))
    }
}
