import Glibc
import Shared

/// Which `Host` headers a port answers: the guard against DNS rebinding, where a page on a name the
/// attacker controls re-points that name at 127.0.0.1 and reads our answers as its own origin.
/// Real Ollama refuses foreign hosts on a loopback bind; this is at least as strict (no private
/// ranges, no `*.local`/`*.internal`).
///
/// On a loopback bind these are accepted, with any port: `localhost`, `*.localhost`, this machine's
/// host name, `127.0.0.0/8`, `[::1]`, the bound address, and `allowed_hosts`. On any other bind the
/// machine is reached by names we cannot know, so every host is accepted unless `allowed_hosts` is
/// set; then only those names and IP literals are.
struct HostPolicy: Sendable {
    let boundHost: String
    let allowedHosts: [String]
    let machineName: String
    /// Whether the bind keeps the port on this machine (then the Host check applies).
    let loopbackBind: Bool
    /// The Host headers clients send nearly always (`127.0.0.1:<port>`, `localhost:<port>`), answered
    /// without parsing: this check runs on every request.
    private let common: Set<String>

    init(boundHost: String, allowedHosts: [String], machineName: String = HostPolicy.hostname(), port: UInt16? = nil) {
        self.boundHost = boundHost.lowercased()
        self.allowedHosts = allowedHosts.map { $0.lowercased() }
        self.machineName = machineName.lowercased()
        loopbackBind = Self.isLoopback(boundHost)
        let names = ["127.0.0.1", "localhost", boundHost.lowercased()]
        common = Set(names + (port.map { p in names.map { "\($0):\(p)" } } ?? []))
    }

    /// Whether the bind address keeps the port on this machine.
    static func isLoopback(_ host: String) -> Bool {
        let h = host.lowercased()
        return h == "localhost" || h == "::1" || h == "[::1]" || isIPv4Loopback(h)
    }

    /// Whether a request naming `header` as its Host is answered. A request without one (HTTP/1.0)
    /// is: it cannot come from a browser.
    func allows(_ header: String?) -> Bool {
        guard let header, !header.isEmpty else { return true }
        if loopbackBind && common.contains(header) { return true }
        if !loopbackBind && allowedHosts.isEmpty { return true }
        let name = Self.hostName(header)
        if loopbackBind {
            return name == "localhost" || name.hasSuffix(".localhost") || name == "::1" || Self.isIPv4Loopback(name)
                || name == machineName || name == boundHost || listed(name)
        }
        if allowedHosts.isEmpty { return true }
        return listed(name) || Self.isIPLiteral(name)
    }

    private func listed(_ name: String) -> Bool {
        allowedHosts.contains { $0 == name || ($0.hasPrefix("*.") && name.hasSuffix($0.dropFirst(1))) }
    }

    /// The host part of a Host header: without its port and brackets, lower case, no trailing dot.
    static func hostName(_ header: String) -> String {
        var h = Substring(header.lowercased())
        if h.hasPrefix("[") {
            h = h.dropFirst().prefix { $0 != "]" }
        } else if let colon = h.lastIndex(of: ":"), !h[h.index(after: colon)...].contains(":"), h.firstIndex(of: ":") == colon {
            h = h[..<colon]
        }
        if h.hasSuffix(".") { h = h.dropLast() }
        return String(h)
    }

    static func isIPv4Loopback(_ name: String) -> Bool {
        var addr = in_addr()
        return inet_pton(AF_INET, name, &addr) == 1 && (UInt32(bigEndian: addr.s_addr) >> 24) == 127
    }

    static func isIPLiteral(_ name: String) -> Bool {
        var v4 = in_addr()
        var v6 = in6_addr()
        return inet_pton(AF_INET, name, &v4) == 1 || inet_pton(AF_INET6, name, &v6) == 1
    }

    /// This machine's name (`gethostname`).
    static func hostname() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "" }
        return buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }
}
