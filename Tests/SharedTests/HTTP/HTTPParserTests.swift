import Testing
@testable import Shared

/// The request-head parser, from raw bytes, with no sockets.
@Suite struct HTTPParserTests {
    func parse(_ text: String, limits: HTTPLimits = HTTPLimits()) -> HTTPParser.Outcome<HTTPRequestHead> {
        let bytes = Array(text.utf8)
        return bytes.withUnsafeBytes { HTTPParser.parseRequestHead($0, limits: limits) }
    }

    func status(_ text: String, limits: HTTPLimits = HTTPLimits()) -> Int? {
        if case .failure(let e) = parse(text, limits: limits) { return e.status.code }
        return nil
    }

    @Test func parsesASimpleGet() throws {
        guard case .complete(let head, let consumed) = parse("GET /api/version?x=1 HTTP/1.1\r\nHost: a\r\nX-Y:  z \r\n\r\nNEXT") else {
            Issue.record("expected a complete head")
            return
        }
        #expect(head.method == "GET")
        #expect(head.path == "/api/version")
        #expect(head.query == "x=1")
        #expect(head.headers["x-y"] == "z")
        #expect(head.keepAlive)
        #expect(head.framing == .none)
        #expect(consumed == "GET /api/version?x=1 HTTP/1.1\r\nHost: a\r\nX-Y:  z \r\n\r\n".utf8.count)
    }

    @Test func incompleteHeadAsksForMore() {
        guard case .incomplete = parse("GET / HTTP/1.1\r\nHost: a\r\n") else {
            Issue.record("expected incomplete")
            return
        }
    }

    @Test func framingAndConnectionSemantics() {
        if case .complete(let h, _) = parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n") { #expect(h.framing == .length(5)) } else { Issue.record("CL") }
        if case .complete(let h, _) = parse("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n") { #expect(h.framing == .chunked) } else { Issue.record("TE") }
        if case .complete(let h, _) = parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n") { #expect(h.framing == .length(5)) } else { Issue.record("CL list") }
        if case .complete(let h, _) = parse("GET / HTTP/1.0\r\n\r\n") { #expect(!h.keepAlive) } else { Issue.record("1.0") }
        if case .complete(let h, _) = parse("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n") { #expect(h.keepAlive) } else { Issue.record("1.0 ka") }
        if case .complete(let h, _) = parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n") { #expect(!h.keepAlive) } else { Issue.record("close") }
        if case .complete(let h, _) = parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n") { #expect(h.expectsContinue) } else { Issue.record("expect") }
        if case .complete(let h, _) = parse("\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n") { #expect(h.method == "GET") } else { Issue.record("leading CRLF") }
        if case .complete(let h, _) = parse("GET http://example/x?y HTTP/1.1\r\nHost: a\r\n\r\n") { #expect(h.target == "/x?y") } else { Issue.record("absolute form") }
    }

    /// One case per fault in docs/ARCHITECTURE.md's fault table, with the status the server must answer.
    static let faults: [(String, String, Int)] = [
        ("both Content-Length and Transfer-Encoding", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        ("two different Content-Lengths", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", 400),
        ("a Content-Length list that disagrees", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 4\r\n\r\n", 400),
        ("a non-numeric Content-Length", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400),
        ("obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n  folded\r\n\r\n", 400),
        ("a bare CR in a field", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\rc\r\n\r\n", 400),
        ("a bare LF line end", "GET / HTTP/1.1\nHost: a\r\n\r\n", 400),
        ("a space before the colon", "GET / HTTP/1.1\r\nHost: a\r\nX-A : b\r\n\r\n", 400),
        ("a non-token field name", "GET / HTTP/1.1\r\nHost: a\r\nX(A): b\r\n\r\n", 400),
        ("a control character in a value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\u{01}c\r\n\r\n", 400),
        ("a missing Host on HTTP/1.1", "GET / HTTP/1.1\r\nX-A: b\r\n\r\n", 400),
        ("two Host fields", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        ("an unknown transfer coding", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
        ("chunked not last", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 400),
        ("Transfer-Encoding on HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        ("the HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400),
        ("garbage", "\u{16}\u{03}\u{01}\u{02}\u{00}\u{01}", 400),
        ("a malformed request line", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        ("a relative target", "GET foo HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        ("HTTP/3.0", "GET / HTTP/3.0\r\nHost: a\r\n\r\n", 505),
        ("an unsupported expectation", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nExpect: teapot\r\n\r\n", 417),
    ]

    @Test(arguments: faults)
    func rejectsFault(_ fault: (String, String, Int)) {
        #expect(status(fault.1) == fault.2, "\(fault.0)")
    }

    @Test func headerBlockOverTheLimitIs431() {
        var limits = HTTPLimits()
        limits.maxHeaderBytes = 1024
        let big = "GET / HTTP/1.1\r\nHost: a\r\nX-Big: \(String(repeating: "a", count: 2000))\r\n\r\n"
        #expect(status(big, limits: limits) == 431)
        // Also while the head is still incomplete: no waiting for a line end that never comes.
        #expect(status("GET / HTTP/1.1\r\nHost: a\r\nX-Big: \(String(repeating: "a", count: 2000))", limits: limits) == 431)
        var few = HTTPLimits()
        few.maxHeaderCount = 3
        #expect(status("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", limits: few) == 431)
    }

    @Test func responseHeadFraming() {
        func framing(_ text: String, method: String = "GET") -> HTTPBodyFraming? {
            let bytes = Array(text.utf8)
            if case .complete(let h, _) = bytes.withUnsafeBytes({ HTTPParser.parseResponseHead($0, requestMethod: method) }) { return h.framing }
            return nil
        }
        #expect(framing("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n") == .length(3))
        #expect(framing("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n") == .chunked)
        #expect(framing("HTTP/1.1 200 OK\r\n\r\n") == .untilClose)
        #expect(framing("HTTP/1.1 204 No Content\r\n\r\n") == HTTPBodyFraming.none)
        #expect(framing("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", method: "HEAD") == HTTPBodyFraming.none)
        #expect(framing("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n") == .length(0))
    }
}

@Suite struct ChunkedDecoderTests {
    func decode(_ text: String, splitEvery: Int = 1 << 20) throws -> (body: String, done: Bool) {
        var decoder = ChunkedDecoder()
        var body: [UInt8] = []
        let bytes = Array(text.utf8)
        var pending: [UInt8] = []
        var offset = 0
        while offset < bytes.count && !decoder.isDone {
            pending += bytes[offset..<min(offset + splitEvery, bytes.count)]
            offset += splitEvery
            while !pending.isEmpty && !decoder.isDone {
                let event = try pending.withUnsafeBytes { try decoder.next($0) }
                switch event {
                case .data(let r, let c):
                    body += pending[r]
                    pending.removeFirst(c)
                case .end(let c):
                    pending.removeFirst(c)
                case .needMore(let c):
                    pending.removeFirst(c)
                }
                if case .needMore = event { break }
            }
        }
        return (String(decoding: body, as: UTF8.self), decoder.isDone)
    }

    @Test func decodesChunksExtensionsAndTrailers() throws {
        let wire = "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
        #expect(try decode(wire) == ("hello world", true))
        // The same bytes one at a time: every state boundary split.
        #expect(try decode(wire, splitEvery: 1) == ("hello world", true))
        #expect(try decode("A\r\n0123456789\r\n0\r\n\r\n") == ("0123456789", true))
    }

    @Test(arguments: [
        "G\r\nabc\r\n0\r\n\r\n",          // not hex
        "\r\nabc\r\n0\r\n\r\n",           // empty size
        "3\r\nabcX\r\n0\r\n\r\n",         // data not followed by CRLF
        "3\nabc\r\n0\r\n\r\n",            // size line ends in bare LF
        "1000000000000000\r\n",          // size overflows
        "3\r\nabc\r\n0\r\n folded\r\n\r\n", // obs-fold in trailer
    ])
    func rejectsBadFraming(_ wire: String) {
        #expect(throws: HTTPError.self) { _ = try decode(wire) }
    }
}
