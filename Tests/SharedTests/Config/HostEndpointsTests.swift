import Glibc
import Testing
@testable import Shared

/// `hosts` entries as the gateway and metrics-service use them: a static entry is one endpoint, a
/// `discover` one an endpoint per address its name resolves to; an entry that cannot be used says why
/// (a name that resolves to nothing is left out: the lookup would leave loopback and wait for DNS);
/// `key` stays the same for the same host and changes with its address or secret.
@Suite struct HostEndpointsTests {
    static let secretText = "0123456789abcdef0123456789abcdef"

    @Test func staticDiscoveredAndBrokenEntries() async throws {
        try await withTemporaryDirectory { dir in
            try AtomicFile.write(Array(Self.secretText.utf8), to: dir + "/secret", mode: 0o600)
            let hosts: [String: AppConfig.RemoteHost] = [
                "gpu1": .init(address: "10.0.0.5:7070", secretFile: "secret"),
                "fleet": .init(address: "localhost:7071", secretFile: dir + "/secret", discover: true),
                "noport": .init(address: "10.0.0.6", secretFile: "secret"),
                "nosecret": .init(address: "10.0.0.7:7070", secretFile: "missing"),
            ]
            let endpoints = await HostEndpoints.resolve(hosts, configDir: dir)
            let byName = Dictionary(endpoints.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
            #expect(byName["gpu1"]?.address == .tcp(host: "10.0.0.5", port: 7070) && byName["gpu1"]?.problem == nil)
            // localhost is 127.0.0.1 (and ::1 where the hosts file says so): one host per address, each on the entry's port.
            let fleet = endpoints.filter { $0.name.hasPrefix("fleet@") }
            #expect(fleet.contains { $0.name == "fleet@127.0.0.1" && $0.address == .tcp(host: "127.0.0.1", port: 7071) }, "\(fleet.map(\.name))")
            #expect(fleet.allSatisfy { $0.problem == nil } && byName["fleet"] == nil)
            #expect(byName["noport"]?.problem?.containsText("expected host:port") == true)
            #expect(byName["nosecret"]?.problem?.containsText("cannot read the shared secret file") == true)

            // The same config resolves to the same keys; another address or secret is another host.
            let again = await HostEndpoints.resolve(hosts, configDir: dir)
            #expect(Set(again.map(\.key)) == Set(endpoints.map(\.key)))
            var moved = hosts
            moved["gpu1"]?.address = "10.0.0.9:7070"
            let afterMove = await HostEndpoints.resolve(moved, configDir: dir)
            #expect(afterMove.first { $0.name == "gpu1" }?.key != byName["gpu1"]?.key)
            #expect(afterMove.first { $0.name == "fleet@127.0.0.1" }?.key == byName["fleet@127.0.0.1"]?.key)
            try AtomicFile.write(Array("another secret of 32 characters!".utf8), to: dir + "/secret", mode: 0o600)
            let rekeyed = await HostEndpoints.resolve(hosts, configDir: dir)
            #expect(rekeyed.first { $0.name == "gpu1" }?.key != byName["gpu1"]?.key)
        }
    }

    @Test func discoverIsWrittenOnlyWhenSet() throws {
        let plain = try JSONCoder.encodeValue(AppConfig.RemoteHost(address: "a:1", secretFile: "s"))
        #expect(plain == .object(JSONObject([("address", .string("a:1")), ("secret_file", .string("s"))])))
        let found = try JSONCoder.decode(AppConfig.RemoteHost.self, from: Array(#"{"address":"a:1","secret_file":"s","discover":true}"#.utf8))
        #expect(found.discover)
        #expect(try JSONCoder.decode(AppConfig.RemoteHost.self, from: Array(#"{"address":"a:1","secret_file":"s"}"#.utf8)).discover == false)
    }
}
