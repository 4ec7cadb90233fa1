import Glibc

/// Parsing of HTTP/1.1 message heads from raw bytes, strictly per RFC 9112, with no I/O: the server
/// and client feed it their input buffers and it is tested from byte strings alone.
///
/// Strictness is deliberate (request smuggling and desync attacks live in leniency): a line must end
/// in CRLF (§2.2: bare CR is rejected; bare LF too), obs-fold is rejected (§5.2), a field name must be
/// a token with no whitespace before the colon (§5.1), Content-Length and Transfer-Encoding together
/// are rejected (§6.3), and differing Content-Length values are rejected (§6.3 item 5).
public enum HTTPParser {
    /// The result of trying to parse a head from the bytes received so far.
    public enum Outcome<Head> {
        /// More bytes are needed.
        case incomplete
        /// A head, and how many bytes it took.
        case complete(Head, consumed: Int)
        /// A fault; the status to answer and the connection must close.
        case failure(HTTPError)
    }

    static let CR: UInt8 = 13
    static let LF: UInt8 = 10
    static let SP: UInt8 = 32
    static let HT: UInt8 = 9

    /// tchar (RFC 9110 §5.6.2) lookup.
    static let tchar: [Bool] = {
        var t = [Bool](repeating: false, count: 256)
        for b in UInt8(ascii: "0")...UInt8(ascii: "9") { t[Int(b)] = true }
        for b in UInt8(ascii: "a")...UInt8(ascii: "z") { t[Int(b)] = true }
        for b in UInt8(ascii: "A")...UInt8(ascii: "Z") { t[Int(b)] = true }
        for c in "!#$%&'*+-.^_`|~".utf8 { t[Int(c)] = true }
        return t
    }()

    static func bad(_ message: String) -> HTTPError { HTTPError(.badRequest, message, closesConnection: true) }

    /// Splits the head into lines. Returns nil while the block is incomplete, or throws a fault.
    /// `lines` receive (start, end) with the CRLF excluded; the final empty line is not included.
    static func splitLines(_ bytes: UnsafeRawBufferPointer, from start: Int, maxBytes: Int,
                           lines: inout [(Int, Int)]) throws(HTTPError) -> Int? {
        let base = bytes.baseAddress!
        var pos = start
        while true {
            let remaining = bytes.count - pos
            guard remaining > 0,
                  let found = memchr(base + pos, Int32(LF), remaining) else {
                if bytes.count > maxBytes { throw HTTPError(.headerFieldsTooLarge, "request header block is larger than \(maxBytes) bytes", closesConnection: true) }
                return nil
            }
            let lf = base.distance(to: UnsafeRawPointer(found))
            if lf + 1 > maxBytes { throw HTTPError(.headerFieldsTooLarge, "request header block is larger than \(maxBytes) bytes", closesConnection: true) }
            guard lf > pos, bytes[lf - 1] == CR else { throw bad("line ends with a bare LF; HTTP requires CRLF") }
            let end = lf - 1
            if end > pos, memchr(base + pos, Int32(CR), end - pos) != nil {
                throw bad("bare CR inside a header line")
            }
            if end == pos { return lf + 1 }  // empty line: end of head
            lines.append((pos, end))
            pos = lf + 1
        }
    }

    /// Rejects bytes that can never begin a request line, without waiting for a line end: garbage and
    /// binary protocols (TLS hellos) are answered at once instead of at the header timeout.
    static func checkRequestLinePrefix(_ bytes: UnsafeRawBufferPointer, from start: Int) throws(HTTPError) {
        var i = start
        var sawMethod = false
        while i < bytes.count {
            let b = bytes[i]
            if b == SP { return }
            if b == CR || b == LF { return }
            if !tchar[Int(b)] { throw bad("malformed request line: not an HTTP/1.1 request") }
            sawMethod = true
            i += 1
            if i - start > 32 { throw bad("malformed request line: method is too long") }
        }
        _ = sawMethod
    }

    static func string(_ bytes: UnsafeRawBufferPointer, _ from: Int, _ to: Int) -> String {
        String(decoding: UnsafeRawBufferPointer(rebasing: bytes[from..<to]), as: UTF8.self)
    }

    /// Parses the field lines into headers, validating names and values.
    static func parseFields(_ bytes: UnsafeRawBufferPointer, _ lines: ArraySlice<(Int, Int)>, maxCount: Int) throws(HTTPError) -> HTTPHeaders {
        if lines.count > maxCount {
            throw HTTPError(.headerFieldsTooLarge, "more than \(maxCount) header fields", closesConnection: true)
        }
        var headers = HTTPHeaders()
        for (start, end) in lines {
            let first = bytes[start]
            if first == SP || first == HT { throw bad("obsolete line folding (obs-fold) in header block") }
            var colon = start
            while colon < end && bytes[colon] != UInt8(ascii: ":") {
                if !tchar[Int(bytes[colon])] {
                    throw bad("invalid header field name: \(string(bytes, start, min(end, start + 64)).debugDescription)")
                }
                colon += 1
            }
            if colon == end { throw bad("header line without a colon") }
            if colon == start { throw bad("empty header field name") }
            var vs = colon + 1
            var ve = end
            while vs < ve && (bytes[vs] == SP || bytes[vs] == HT) { vs += 1 }
            while ve > vs && (bytes[ve - 1] == SP || bytes[ve - 1] == HT) { ve -= 1 }
            var i = vs
            while i < ve {
                let b = bytes[i]
                if (b < 0x20 && b != HT) || b == 0x7F {
                    throw bad("invalid character 0x\(String(b, radix: 16)) in header field value")
                }
                i += 1
            }
            headers.add(string(bytes, start, colon), string(bytes, vs, ve))
        }
        return headers
    }

    /// Interprets Content-Length and Transfer-Encoding (RFC 9112 §6.1–6.3).
    static func framing(of headers: HTTPHeaders, version: HTTPVersion, isRequest: Bool) throws(HTTPError) -> HTTPBodyFraming {
        let te = headers.values("transfer-encoding")
        let cl = headers.values("content-length")
        if !te.isEmpty {
            if !cl.isEmpty { throw bad("both Content-Length and Transfer-Encoding are present") }
            if version == .http1_0 && isRequest { throw bad("Transfer-Encoding in an HTTP/1.0 request") }
            var codings: [Substring] = []
            for v in te {
                for part in v.split(separator: ",", omittingEmptySubsequences: false) {
                    let c = part.trimmingSpaces()
                    if c.isEmpty { throw bad("empty transfer coding") }
                    codings.append(c)
                }
            }
            let chunkedCount = codings.filter { $0.asciiCaseInsensitiveEquals("chunked") }.count
            for c in codings where !c.asciiCaseInsensitiveEquals("chunked") {
                if isRequest { throw HTTPError(.notImplemented, "transfer coding \"\(c)\" is not supported (only chunked)", closesConnection: true) }
            }
            if chunkedCount > 1 { throw bad("chunked transfer coding applied twice") }
            if let last = codings.last, last.asciiCaseInsensitiveEquals("chunked") { return .chunked }
            if isRequest { throw bad("chunked must be the final transfer coding of a request") }
            return .untilClose
        }
        if !cl.isEmpty {
            var length: Int?
            for v in cl {
                for part in v.split(separator: ",", omittingEmptySubsequences: false) {
                    let digits = part.trimmingSpaces()
                    guard !digits.isEmpty, digits.utf8.count <= 18, digits.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }),
                          let n = Int(digits) else {
                        throw bad("invalid Content-Length: \(String(v.prefix(40)).debugDescription)")
                    }
                    if let l = length, l != n { throw bad("conflicting Content-Length values") }
                    length = n
                }
            }
            if let length { return length == 0 && isRequest ? .none : .length(length) }
        }
        return isRequest ? .none : .untilClose
    }

    /// Parses a request head. `limits` gives the byte and field-count caps.
    public static func parseRequestHead(_ bytes: UnsafeRawBufferPointer, limits: HTTPLimits) -> Outcome<HTTPRequestHead> {
        do {
            return try parseRequestHeadThrowing(bytes, limits: limits)
        } catch {
            return .failure(error)
        }
    }

    static func parseRequestHeadThrowing(_ bytes: UnsafeRawBufferPointer, limits: HTTPLimits) throws(HTTPError) -> Outcome<HTTPRequestHead> {
        var start = 0
        // RFC 9112 §2.2: ignore empty lines before the request line.
        while start + 1 < bytes.count && bytes[start] == CR && bytes[start + 1] == LF { start += 2 }
        if start >= bytes.count || (start + 1 == bytes.count && bytes[start] == CR) { return .incomplete }
        try checkRequestLinePrefix(bytes, from: start)
        var lines: [(Int, Int)] = []
        lines.reserveCapacity(16)
        guard let consumed = try splitLines(bytes, from: start, maxBytes: limits.maxHeaderBytes + start, lines: &lines) else {
            return .incomplete
        }
        guard let (ls, le) = lines.first else { throw bad("empty request line") }

        // request-line = method SP request-target SP HTTP-version
        var sp1 = ls
        while sp1 < le && bytes[sp1] != SP { sp1 += 1 }
        var sp2 = sp1 + 1
        while sp2 < le && bytes[sp2] != SP { sp2 += 1 }
        guard sp1 > ls, sp1 < le, sp2 < le, sp2 > sp1 + 1 else { throw bad("malformed request line") }
        for i in ls..<sp1 where !tchar[Int(bytes[i])] { throw bad("invalid method") }
        for i in (sp1 + 1)..<sp2 where bytes[i] < 0x21 || bytes[i] > 0x7E { throw bad("invalid character in request target") }
        let method = string(bytes, ls, sp1)
        var target = string(bytes, sp1 + 1, sp2)
        let versionText = string(bytes, sp2 + 1, le)
        let version: HTTPVersion
        switch versionText {
        case "HTTP/1.1": version = .http1_1
        case "HTTP/1.0": version = .http1_0
        default:
            if method == "PRI" && versionText == "HTTP/2.0" {
                throw bad("HTTP/2 connection preface received; this port speaks HTTP/1.1 only")
            }
            let v = Array(versionText.utf8)
            guard v.count == 8, versionText.hasPrefix("HTTP/"), v[6] == UInt8(ascii: "."),
                  (48...57).contains(v[5]), (48...57).contains(v[7]) else {
                throw bad("malformed HTTP version \(String(versionText.prefix(16)).debugDescription)")
            }
            if v[5] != UInt8(ascii: "1") {
                throw HTTPError(.versionNotSupported, "\(versionText) is not supported; use HTTP/1.1", closesConnection: true)
            }
            version = .http1_1  // HTTP/1.x, x > 1: answer as 1.1 (RFC 9110 §6.2)
        }
        // Request target forms (RFC 9112 §3.2): origin, absolute (reduced to origin), asterisk.
        if target.hasPrefix("http://") || target.hasPrefix("https://") {
            let afterScheme = target.index(target.firstIndex(of: ":")!, offsetBy: 3)
            let rest = target[afterScheme...]
            target = rest.firstIndex(of: "/").map { String(rest[$0...]) } ?? "/"
        } else if !(target.hasPrefix("/") || (target == "*" && method == "OPTIONS")) {
            throw bad("request target must be an absolute path")
        }

        let headers = try parseFields(bytes, lines[1...], maxCount: limits.maxHeaderCount)
        let hosts = headers.values("host")
        if version == .http1_1 && hosts.isEmpty { throw bad("missing Host header (required in HTTP/1.1)") }
        if hosts.count > 1 { throw bad("more than one Host header") }
        let framing = try framing(of: headers, version: version, isRequest: true)
        let keepAlive = version == .http1_1
            ? !headers.containsToken("connection", "close")
            : headers.containsToken("connection", "keep-alive")
        var expectsContinue = false
        if let expect = headers["expect"] {
            if expect.trimmingSpaces().asciiCaseInsensitiveEquals("100-continue") {
                expectsContinue = version == .http1_1 && framing != .none
            } else {
                throw HTTPError(.expectationFailed, "unsupported expectation \(String(expect.prefix(40)).debugDescription)", closesConnection: true)
            }
        }
        let head = HTTPRequestHead(method: method, target: target, version: version, headers: headers,
                                   framing: framing, keepAlive: keepAlive, expectsContinue: expectsContinue)
        return .complete(head, consumed: consumed)
    }

    /// Parses a response head (for the HTTP client). `requestMethod` decides whether a body follows.
    public static func parseResponseHead(_ bytes: UnsafeRawBufferPointer, requestMethod: String, maxBytes: Int = 65536) -> Outcome<HTTPResponseHead> {
        do throws(HTTPError) {
            var lines: [(Int, Int)] = []
            guard let consumed = try splitLines(bytes, from: 0, maxBytes: maxBytes, lines: &lines) else { return .incomplete }
            guard let (ls, le) = lines.first, le - ls >= 12 else { throw bad("malformed status line") }
            let versionText = string(bytes, ls, ls + 8)
            let version: HTTPVersion
            switch versionText {
            case "HTTP/1.1": version = .http1_1
            case "HTTP/1.0": version = .http1_0
            default: throw bad("unsupported response version \(versionText.debugDescription)")
            }
            guard bytes[ls + 8] == SP,
                  let code = Int(string(bytes, ls + 9, ls + 12)), (100...999).contains(code),
                  le == ls + 12 || bytes[ls + 12] == SP else { throw bad("malformed status line") }
            let headers = try parseFields(bytes, lines[1...], maxCount: 512)
            let status = HTTPStatus(code)
            var framing = try framing(of: headers, version: version, isRequest: false)
            if status.forbidsBody || requestMethod == "HEAD" { framing = .none }
            var keepAlive = version == .http1_1
                ? !headers.containsToken("connection", "close")
                : headers.containsToken("connection", "keep-alive")
            if framing == .untilClose { keepAlive = false }
            return .complete(HTTPResponseHead(version: version, status: status, headers: headers, framing: framing, keepAlive: keepAlive), consumed: consumed)
        } catch {
            return .failure(error)
        }
    }
}

/// Byte and count limits of the HTTP layer, all overridable from `app_config.json`.
public struct HTTPLimits: Sendable {
    /// The whole request line plus header block (431 beyond it).
    public var maxHeaderBytes = 64 * 1024
    /// Header fields per request (431 beyond it).
    public var maxHeaderCount = 128
    /// Request body bytes (413 beyond it).
    public var maxBodyBytes = 100 * 1024 * 1024
    /// Chunk extensions and trailers, per request.
    public var maxChunkMetadataBytes = 16 * 1024
    public init() {}
}
