import FoundationEssentials
import Glibc
@testable import Shared

/// A whole Llama Runner started by the real `launcher up` on free loopback ports and a temporary
/// state directory, so tests can run beside a live instance.
final class Mesh {
    let dir: String
    let paths: RuntimePaths
    private(set) var ports: (ollama: UInt16, lmstudio: UInt16, api: UInt16, web: UInt16)
    var launcher: ChildProcess?
    let control: RPCClient

    static var binDir: String { executableDirectory() }

    init() throws {
        dir = try makeTemporaryDirectory(prefix: "lr-mesh")
        paths = RuntimePaths(stateDir: dir + "/state", configDir: dir + "/config")
        ports = (0, 0, 0, 0)
        control = RPCClient(path: paths.launcherSocket, defaultTimeout: 5)
        try makeDirectories(paths.configDir)
        try choosePorts()
    }

    /// Picks four free ports and writes them into app_config.json.
    func choosePorts() throws {
        let free = try Mesh.freePorts(4)
        ports = (free[0], free[1], free[2], free[3])
        let config = """
        {"proxies": {"ollama": {"host": "127.0.0.1", "port": \(ports.ollama)},
                     "lmstudio": {"host": "127.0.0.1", "port": \(ports.lmstudio)}},
         "dashboard": {"host": "127.0.0.1", "api_port": \(ports.api), "web_port": \(ports.web)},
         "paths": {"import": {"ollama": false, "lmstudio": false, "huggingface": false, "llama_cpp": false}}}
        """
        try AtomicFile.write(Array(config.utf8), to: paths.configDir + "/app_config.json")
    }

    /// Ports the kernel reports free right now.
    static func freePorts(_ n: Int) throws -> [UInt16] {
        let listeners = try (0..<n).map { _ in try Listener(.tcp(host: "127.0.0.1", port: 0), loop: .shared) }
        defer { listeners.forEach { $0.close() } }
        return listeners.map(\.port)
    }

    var arguments: [String] { ["--state-dir", paths.stateDir, "--config-dir", paths.configDir] }

    /// Runs `launcher <command>` to completion and returns its exit status and output.
    func run(_ command: [String], timeout: Double = 60) async throws -> (ExitStatus, String) {
        let out = dir + "/cli-\(monotonicNanos()).out"
        let child = try ChildProcess.spawn(Mesh.binDir + "/launcher", arguments: command + arguments, output: .file(out))
        let status = try await waitExit(child, timeout: timeout)
        return (status, readFile(out) ?? "")
    }

    struct StartFailure: Error, CustomStringConvertible {
        let output: String
        var description: String { "launcher up failed:\n\(output)" }
    }

    /// Starts `launcher up` and waits until every service is running. A port taken by another test's
    /// process between choosing and binding it (tests run in parallel) is retried on fresh ports; any
    /// other failure ends at once with the launcher's output.
    func up() async throws {
        for attempt in 1...3 {
            launcher = try ChildProcess.spawn(Mesh.binDir + "/launcher", arguments: ["up"] + arguments, output: .file(dir + "/launcher.out"))
            control.start()
            var failed = false
            try await waitUntil("all services running", timeout: 60) {
                if self.launcher?.isRunning == false { failed = true; return true }
                guard let report = try? await self.status() else { return false }
                if report.services.contains(where: { $0.state == .failed }) { failed = true; return true }
                return report.services.allSatisfy { $0.state == .running }
            }
            guard failed else { return }
            let output = launcherOutput
            if let launcher, launcher.isRunning {
                launcher.signal(SIGINT, group: false)
                _ = try await waitExit(launcher, timeout: 60)
            }
            guard output.contains("already in use") && attempt < 3 else { throw StartFailure(output: output) }
            try choosePorts()
            unlink(dir + "/launcher.out")
        }
    }

    func status() async throws -> LauncherRPC.StatusReport {
        try await control.call(LauncherRPC.Status.self, Empty(), timeout: 2)
    }

    func pids() async throws -> [String: Int32] {
        var result: [String: Int32] = [:]
        for s in try await status().services { result[s.name] = s.pid }
        return result
    }

    /// GET on one of the mesh's ports.
    func get(_ port: UInt16, _ target: String, method: String = "GET") async throws -> (Int, String) {
        let client = HTTPClient(address: .tcp(host: "127.0.0.1", port: port))
        let r = try await client.send(HTTPClientRequest(method: method, target: target), timeout: 10)
        let body = try await r.collect()
        client.closeIdle()
        return (r.status.code, String(decoding: body, as: UTF8.self))
    }

    /// Sends SIGINT to the launcher and waits for it to exit.
    func interrupt() async throws -> ExitStatus {
        guard let launcher else { throw SystemError("no launcher") }
        launcher.signal(SIGINT, group: false)
        let status = try await waitExit(launcher, timeout: 60)
        await control.close()
        return status
    }

    /// Runs `body` with a fresh mesh and always cleans it up, whether `body` passes or throws.
    static func with(_ body: (Mesh) async throws -> Void) async throws {
        let mesh = try Mesh()
        do {
            try await body(mesh)
        } catch {
            await mesh.cleanup()
            throw error
        }
        await mesh.cleanup()
    }

    /// Kills anything still running and removes the directory (safety net for failed tests).
    func cleanup() async {
        await control.close()
        if let launcher, launcher.isRunning {
            launcher.signal(SIGINT, group: false)
            _ = try? await waitExit(launcher, timeout: 30)
            if launcher.isRunning { launcher.signal(SIGKILL) }
        }
        removeTree(dir)
    }

    var launcherOutput: String { readFile(dir + "/launcher.out") ?? "" }
}

struct Timeout: Error, CustomStringConvertible {
    let what: String
    var description: String { "timed out waiting for \(what)" }
}

func waitExit(_ child: ChildProcess, timeout: Double) async throws -> ExitStatus {
    let until = deadline(after: timeout)
    while child.isRunning {
        if monotonicNanos() > until { throw Timeout(what: "\(child.executable) (pid \(child.pid)) to exit") }
        try await EventLoop.shared.sleep(seconds: 0.02)
    }
    return await child.wait()
}

func waitUntil(_ what: String, timeout: Double, _ condition: () async throws -> Bool) async throws {
    let until = deadline(after: timeout)
    while try await !condition() {
        if monotonicNanos() > until { throw Timeout(what: what) }
        try await EventLoop.shared.sleep(seconds: 0.02)
    }
}

/// Whether a pid is alive (a zombie counts as a leftover too).
func processExists(_ pid: Int32) -> Bool {
    access("/proc/\(pid)", F_OK) == 0
}

/// The state letter of a live process (`Z` for a zombie), from /proc.
func processState(_ pid: Int32) -> Character? {
    guard let stat = readFile("/proc/\(pid)/stat"), let close = stat.lastIndex(of: ")") else { return nil }
    return stat[stat.index(close, offsetBy: 2)]
}

/// Files in a directory.
