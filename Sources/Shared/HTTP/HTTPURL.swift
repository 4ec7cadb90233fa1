import Glibc
import Synchronization

/// An absolute `http` or `https` URL, split as a client needs it (RFC 3986 §3): scheme, host, port
/// and the origin-form target (path and query). The fragment is dropped; userinfo is refused (a
/// credential in a URL would be logged and sent on redirects).
public struct HTTPURL: Sendable, Equatable, Hashable, CustomStringConvertible {
    public let scheme: String
    /// Lower case; an IPv6 literal without its brackets.
    public let host: String
    public let port: UInt16
    /// Path and query, starting with `/`.
    public let target: String

    public init?(_ text: some StringProtocol) {
        guard let (schemeText, restText) = text.splitOnce("://") else { return nil }
        let scheme = schemeText.lowercased()
        guard scheme == "http" || scheme == "https" else { return nil }
        var rest = Substring(restText)
        if let hash = rest.firstIndex(of: "#") { rest = rest[..<hash] }
        let authorityEnd = rest.firstIndex { $0 == "/" || $0 == "?" } ?? rest.endIndex
        let authority = rest[..<authorityEnd]
        guard !authority.isEmpty, !authority.contains("@") else { return nil }
        var host = Substring(authority)
        var port: UInt16 = scheme == "https" ? 443 : 80
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { return nil }
            host = authority[authority.index(after: authority.startIndex)..<close]
            let after = authority[authority.index(after: close)...]
            if after.hasPrefix(":") {
                guard let p = UInt16(after.dropFirst()) else { return nil }
                port = p
            } else if !after.isEmpty { return nil }
        } else if let colon = authority.lastIndex(of: ":") {
            host = authority[..<colon]
            guard let p = UInt16(authority[authority.index(after: colon)...]) else { return nil }
            port = p
        }
        guard !host.isEmpty, host.allSatisfy({ $0.isASCII && !$0.isWhitespace }) else { return nil }
        var target = String(rest[authorityEnd...])
        if target.isEmpty || target.hasPrefix("?") { target = "/" + target }
        guard !target.contains(where: { $0.isWhitespace }) else { return nil }
        self.scheme = scheme
        self.host = host.lowercased()
        self.port = port
        self.target = target
    }

    public var isTLS: Bool { scheme == "https" }
    var isDefaultPort: Bool { port == (isTLS ? 443 : 80) }

    /// `scheme://host[:port]`.
    public var origin: String {
        let h = host.contains(":") ? "[\(host)]" : host
        return isDefaultPort ? "\(scheme)://\(h)" : "\(scheme)://\(h):\(port)"
    }

    /// The `Host` header for this URL.
    public var hostHeader: String {
        let h = host.contains(":") ? "[\(host)]" : host
        return isDefaultPort ? h : "\(h):\(port)"
    }

    /// The path without the query.
    public var path: String { String(target.prefix { $0 != "?" }) }

    public var description: String { origin + target }

    /// A `Location` header's URL, which may be absolute, scheme-relative, path-absolute or relative
    /// (RFC 9110 §10.2.2, RFC 3986 §5.2).
    public func resolving(_ reference: String) -> HTTPURL? {
        if reference.containsText("://") { return HTTPURL(reference) }
        if reference.hasPrefix("//") { return HTTPURL(scheme + ":" + reference) }
        if reference.hasPrefix("/") { return HTTPURL(origin + reference) }
        let base = path.hasSuffix("/") ? path : String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)]) + "/"
        return HTTPURL(origin + base + reference)
    }

    /// The URL with `path` (a path, possibly with a query) appended to this one's path.
    public func appending(_ suffix: String) -> HTTPURL? {
        let basePath = path.hasSuffix("/") ? String(path.dropLast()) : path
        return HTTPURL(origin + basePath + (suffix.hasPrefix("/") ? suffix : "/" + suffix))
    }

    /// Percent-encodes what may not stand in a path segment (RFC 3986 §3.3): everything but
    /// unreserved characters and `/` when `keepSlashes`.
    public static func encodePath(_ text: String, keepSlashes: Bool = true) -> String {
        var out = ""
        for byte in text.utf8 {
            let c = Character(Unicode.Scalar(byte))
            if c.isASCII && (c.isLetter || c.isNumber || "-._~".contains(c) || (keepSlashes && c == "/")) {
                out.append(c)
            } else {
                out += "%" + (byte < 16 ? "0" : "") + String(byte, radix: 16, uppercase: true)
            }
        }
        return out
    }
}

/// Host names to addresses, off the event loop: `getaddrinfo` blocks (DNS), so it runs on the
/// blocking pool.
public enum HostResolver {
    /// The numeric address of `host` (IPv4 preferred), or `SocketError.unresolvable`.
    public static func resolve(_ host: String) async throws -> String {
        if host.allSatisfy({ $0.isNumber || $0 == "." }) || host.contains(":") { return host }
        return try await BlockingPool.shared.run { () throws -> String in
            var hints = addrinfo()
            hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
            var result: UnsafeMutablePointer<addrinfo>?
            guard getaddrinfo(host, nil, &hints, &result) == 0, let first = result else { throw SocketError.unresolvable(host) }
            defer { freeaddrinfo(result) }
            var chosen: String?
            var cursor: UnsafeMutablePointer<addrinfo>? = first
            while let info = cursor {
                var buffer = [CChar](repeating: 0, count: Int(NI_MAXHOST))
                if getnameinfo(info.pointee.ai_addr, info.pointee.ai_addrlen, &buffer, socklen_t(buffer.count), nil, 0, NI_NUMERICHOST) == 0 {
                    let text = String(cBuffer: buffer)
                    if info.pointee.ai_family == AF_INET { return text }
                    chosen = chosen ?? text
                }
                cursor = info.pointee.ai_next
            }
            guard let chosen else { throw SocketError.unresolvable(host) }
            return chosen
        }
    }
}

extension HostResolver {
    /// Every numeric address `host` resolves to, each once, IPv4 first, in the resolver's order
    /// (a Kubernetes headless Service's name: one per pod). A numeric address is itself. The lookup
    /// runs on a thread of its own: a DNS server that does not answer holds it for the resolver's
    /// timeout (5 s and more), which on the shared `BlockingPool` would stall everyone's file work.
    public static func resolveAll(_ host: String) async throws -> [String] {
        if host.allSatisfy({ $0.isNumber || $0 == "." }) || host.contains(":") { return [host] }
        return try await onThreadOfItsOwn { () -> Result<[String], SocketError> in
            var hints = addrinfo()
            hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
            var result: UnsafeMutablePointer<addrinfo>?
            guard getaddrinfo(host, nil, &hints, &result) == 0, let first = result else { return .failure(.unresolvable(host)) }
            defer { freeaddrinfo(result) }
            var v4: [String] = []
            var v6: [String] = []
            var cursor: UnsafeMutablePointer<addrinfo>? = first
            while let info = cursor {
                var buffer = [CChar](repeating: 0, count: Int(NI_MAXHOST))
                if getnameinfo(info.pointee.ai_addr, info.pointee.ai_addrlen, &buffer, socklen_t(buffer.count), nil, 0, NI_NUMERICHOST) == 0 {
                    let text = String(cBuffer: buffer)
                    if info.pointee.ai_family == AF_INET { if !v4.contains(text) { v4.append(text) } } else if !v6.contains(text) { v6.append(text) }
                }
                cursor = info.pointee.ai_next
            }
            return .success(v4 + v6)
        }.get()
    }
}

/// HTTP and HTTPS to any URL: one keep-alive pool (`HTTPClient`) per origin, names resolved off the
/// loop, TLS for `https`. Redirects are not followed here: a caller that follows them decides what
/// each hop may carry (credentials only to the hosts meant to have them).
public final class WebClient: Sendable {
    let loop: EventLoop
    let connectTimeout: Double
    private let pools = Mutex<[String: HTTPClient]>([:])

    public init(loop: EventLoop = .shared, connectTimeout: Double = 15) {
        self.loop = loop
        self.connectTimeout = connectTimeout
    }

    /// Sends `method` to `url` with `headers` (and `Host`), returning once the response head is in.
    public func send(_ method: String, _ url: HTTPURL, headers: HTTPHeaders = HTTPHeaders(), timeout: Double = 60) async throws -> HTTPClientResponse {
        let client = try await client(for: url)
        var h = headers
        if h["host"] == nil { h.set("Host", url.hostHeader) }
        return try await client.send(HTTPClientRequest(method: method, target: url.target, headers: h), timeout: timeout)
    }

    func client(for url: HTTPURL) async throws -> HTTPClient {
        if let c = pools.withLock({ $0[url.origin] }) { return c }
        let address = try await HostResolver.resolve(url.host)
        return pools.withLock { p in
            if let c = p[url.origin] { return c }
            let c = HTTPClient(address: .tcp(host: address, port: url.port), loop: loop, maxIdleConnections: 8, connectTimeout: connectTimeout,
                               tlsHost: url.isTLS ? url.host : nil, hostHeader: url.hostHeader)
            p[url.origin] = c
            return c
        }
    }

    /// Closes every idle connection.
    public func closeIdle() { pools.withLock { Array($0.values) }.forEach { $0.closeIdle() } }
}
