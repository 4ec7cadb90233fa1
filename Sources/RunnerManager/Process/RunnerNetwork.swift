import Glibc
import Shared

/// Where runners listen and how they are guarded. On a machine that serves only its own gateway,
/// loopback and no key; on a host serving remote gateways (`runner_host`), the host's address and a
/// fresh API key per runner (llama-server's `--api-key-file`), which goes to the gateway with each
/// grant, so the data plane answers nobody else on the network. whisper-server has no key option, so
/// audio runners stay on loopback (and are offered to this machine's gateway only).
struct RunnerNetwork: Sendable, Equatable {
    /// The address runners bind.
    let bindHost: String
    /// The address in their endpoints (what a gateway connects to).
    let reachableHost: String
    /// Where key files are written (0600, in a 0700 folder); nil = no keys.
    let keyDirectory: String?

    static let loopback = RunnerNetwork(bindHost: "127.0.0.1", reachableHost: "127.0.0.1", keyDirectory: nil)

    static func of(_ config: AppConfig.RunnerHost?, runDir: String) -> RunnerNetwork {
        guard let config else { return .loopback }
        return RunnerNetwork(bindHost: config.host, reachableHost: config.reachableHost, keyDirectory: runDir + "/runner-keys")
    }

    /// Whether runners of `kind` listen beyond loopback with a key.
    func isRemote(_ kind: RuntimeKind) -> Bool { keyDirectory != nil && kind == .llamaServer }

    /// The address a runner of `kind` binds, is reached at, and the address this machine's own checks
    /// (health, slot saves) use.
    func addresses(_ kind: RuntimeKind) -> (bind: String, reachable: String, local: String) {
        guard isRemote(kind) else { return ("127.0.0.1", "127.0.0.1", "127.0.0.1") }
        let local = bindHost == "0.0.0.0" ? "127.0.0.1" : bindHost == "::" ? "::1" : bindHost
        return (bindHost, reachableHost, local)
    }

    /// A new key for the runner of `model`, written to its key file; the arguments that make
    /// llama-server require it.
    func issueKey(model: String) throws -> (key: String, arguments: [String]) {
        guard let keyDirectory else { throw RunnerError.spawnFailed("runner keys need runner_host") }
        try makeDirectories(keyDirectory, mode: 0o700)
        let key = "lr-" + RPCAuth.nonce()
        let path = keyDirectory + "/" + RunnerProcess.safeName(model) + ".key"
        do {
            try AtomicFile.write(Array((key + "\n").utf8), to: path, mode: 0o600)
        } catch {
            throw RunnerError.spawnFailed("cannot write the runner's key file \(path): \(error)")
        }
        return (key, ["--api-key-file", path])
    }
}
