import Testing
@testable import Gateway

/// The DNS-rebinding guard: which Host headers a port answers.
@Suite struct HostPolicyTests {
    let loopback = HostPolicy(boundHost: "127.0.0.1", allowedHosts: [], machineName: "workstation")

    @Test(arguments: ["localhost", "localhost:11434", "LOCALHOST", "localhost.", "app.localhost:8080", "127.0.0.1", "127.0.0.1:1234",
                      "127.1.2.3", "[::1]", "[::1]:8585", "workstation", "workstation:11434", "WorkStation."])
    func loopbackNamesAreAnswered(host: String) {
        #expect(loopback.allows(host))
    }

    @Test(arguments: ["evil.example", "evil.example:11434", "localhost.evil.example", "127.0.0.1.nip.io", "10.0.0.5", "192.168.1.20:8080",
                      "[2001:db8::1]", "workstation.evil.example", "0.0.0.0", "notlocalhost"])
    func foreignNamesAreRefusedOnALoopbackBind(host: String) {
        #expect(!loopback.allows(host))
    }

    @Test func aRequestWithoutHostCannotComeFromABrowserAndIsAnswered() {
        #expect(loopback.allows(nil))
        #expect(loopback.allows(""))
    }

    @Test func allowedHostsAddNamesAndDomains() {
        let p = HostPolicy(boundHost: "127.0.0.1", allowedHosts: ["llm.home.arpa", "*.example.com"], machineName: "")
        #expect(p.allows("llm.home.arpa:11434"))
        #expect(p.allows("api.example.com"))
        #expect(p.allows("a.b.example.com:1"))
        #expect(!p.allows("example.com.evil"))
        #expect(!p.allows("evilexample.com"))
    }

    @Test func theBoundAddressIsAnswered() {
        let p = HostPolicy(boundHost: "localhost", allowedHosts: [], machineName: "")
        #expect(p.allows("localhost:8080"))
        #expect(!p.allows("evil.example"))
    }

    @Test func aNonLoopbackBindAnswersEveryHostUnlessAllowedHostsIsSet() {
        let open = HostPolicy(boundHost: "0.0.0.0", allowedHosts: [], machineName: "")
        #expect(open.allows("192.168.1.20:8080"))
        #expect(open.allows("any.name"))
        let listed = HostPolicy(boundHost: "0.0.0.0", allowedHosts: ["llm.lan"], machineName: "")
        #expect(listed.allows("llm.lan"))
        #expect(listed.allows("192.168.1.20:8080"), "IP literals are not rebinding targets")
        #expect(listed.allows("[fe80::1]:11434"))
        #expect(!listed.allows("evil.example"))
    }

    @Test func loopbackBindsAreRecognised() {
        for host in ["127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"] { #expect(HostPolicy.isLoopback(host), "\(host)") }
        for host in ["0.0.0.0", "::", "192.168.1.2", "example.com"] { #expect(!HostPolicy.isLoopback(host), "\(host)") }
    }
}

/// Which web origins may drive a port.
@Suite struct OriginPolicyTests {
    let local = OriginPolicy(patterns: OriginPolicy.localOrigins, dashboardWebPort: nil)

    @Test(arguments: ["http://localhost", "http://localhost:3000", "https://127.0.0.1:8443", "http://0.0.0.0:5173", "app://obsidian.md",
                      "file://", "tauri://localhost", "vscode-webview://abc123", "HTTP://LOCALHOST:1"])
    func ollamasLocalOriginsAreAllowedByDefault(origin: String) {
        #expect(local.allows(origin, host: "127.0.0.1:11434"))
    }

    @Test(arguments: ["http://evil.example", "https://localhost.evil.example", "http://127.0.0.1.evil.example", "null",
                      "http://192.168.1.2:8080", "https://evil.example:11434"])
    func otherOriginsAreNot(origin: String) {
        #expect(!local.allows(origin, host: "127.0.0.1:11434"))
    }

    @Test func theDashboardIsAllowedOnTheSameHostNameWhateverItIs() {
        let dashboard = OriginPolicy(patterns: OriginPolicy.dashboardOrigins(webPort: 8080), dashboardWebPort: 8080)
        #expect(dashboard.allows("http://127.0.0.1:8080", host: "127.0.0.1:8585"))
        #expect(dashboard.allows("http://localhost:8080", host: "127.0.0.1:8585"))
        #expect(dashboard.allows("http://192.168.1.20:8080", host: "192.168.1.20:8585"))
        #expect(dashboard.allows("http://[fd00::2]:8080", host: "[fd00::2]:8585"))
        #expect(!dashboard.allows("http://192.168.1.20:8080", host: "10.0.0.1:8585"), "another host's page")
        #expect(!dashboard.allows("http://127.0.0.1:3000", host: "127.0.0.1:8585"), "another port is another app")
        #expect(!dashboard.allows("http://evil.example", host: "127.0.0.1:8585"))
    }

    @Test func starAloneAllowsEveryOrigin() {
        let all = OriginPolicy(patterns: ["*"], dashboardWebPort: nil)
        #expect(all.allowsEveryOrigin)
        #expect(all.allows("http://evil.example", host: nil))
    }

    @Test func globsMatchRunsOfCharacters() {
        #expect(OriginPolicy.matches("https://a.example.com", "https://*.example.com"))
        #expect(!OriginPolicy.matches("https://example.com", "https://*.example.com"))
        #expect(OriginPolicy.matches("x", "*"))
        #expect(OriginPolicy.matches("abc", "a*c"))
        #expect(!OriginPolicy.matches("abcd", "a*c"))
        #expect(OriginPolicy.matches("aXbXc", "a*b*c"))
    }
}
