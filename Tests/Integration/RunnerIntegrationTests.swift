import FoundationEssentials
import Glibc
import Testing
@testable import Shared

/// The demo model placed by scripts/bootstrap.sh.
let demoModel: String = {
    var parts = #filePath.split(separator: "/").map(String.init)
    parts.removeLast(3)
    return "/" + parts.joined(separator: "/") + "/models/SmolLM2-135M-Instruct.Q4_1.gguf"
}()

/// model-registry and runner-manager running alone, with the real llama-server and SmolLM2.
/// "smol-a" and "smol-b" are the same file with different ctx_size: two models to the scheduler.
final class RunnerRig: @unchecked Sendable {
    // @unchecked Sendable: `registry` and `manager` change only in setup and restart steps of one
    // test task; concurrent tasks use only `runners`, an RPCClient (Sendable).
    let dir: String
    let paths: RuntimePaths
    var registry: ChildProcess?
    var manager: ChildProcess?
    let runners: RPCClient

    init(maxLoaded: Int = 2, ttl: Int = 300, extraModels: String = "") throws {
        dir = try makeTemporaryDirectory(prefix: "lr-run")
        paths = RuntimePaths(stateDir: dir + "/state", configDir: dir + "/config")
        try makeDirectories(paths.configDir)
        try AtomicFile.write(Array("""
        {"paths": {"models_dirs": [], "import": {"ollama": false, "lmstudio": false, "huggingface": false, "llama_cpp": false}}, "discovery_interval_seconds": 0,
         "limits": {"max_loaded_models": \(maxLoaded), "default_ttl_seconds": \(ttl), "unload_timeout_seconds": 5}}
        """.utf8), to: paths.configDir + "/app_config.json")
        try AtomicFile.write(Array("""
        {"default_model": "smol-a", "models": {
          "smol-a": {"model_path": "\(demoModel)", "parameters": {"ctx_size": 512}},
          "smol-b": {"model_path": "\(demoModel)", "parameters": {"ctx_size": 1024}},
          "smol-short": {"model_path": "\(demoModel)", "parameters": {"ctx_size": 256}, "ttl_seconds": 1},
          "smol-broken": {"model_path": "\(demoModel)", "parameters": {"ctx_size": 256, "no_such_flag_xyz": true}},
          "ghost": {"model_path": "\(dir)/nowhere.gguf"}\(extraModels)
        }}
        """.utf8), to: paths.configDir + "/models_config.json")
        runners = RPCClient(path: paths.socket(.runners), defaultTimeout: 120, minBackoff: 0.01, maxBackoff: 0.1)
        runners.start()
    }

    var arguments: [String] { ["--state-dir", paths.stateDir, "--config-dir", paths.configDir] }

    func start() async throws {
        if registry == nil {
            registry = try ChildProcess.spawn(Mesh.binDir + "/model-registry", arguments: arguments, output: .file(dir + "/registry.out"))
        }
        try await startManager()
    }

    func startManager() async throws {
        let child = try ChildProcess.spawn(Mesh.binDir + "/runner-manager", arguments: arguments, output: .file(dir + "/manager.out"))
        manager = child
        try await waitUntil("runner-manager health", timeout: 30) {
            (try? await self.runners.call(ServiceRPC.Health.self, Empty(), timeout: 1))?.pid == child.pid
        }
    }

    func acquire(_ model: String, keepAlive: Double? = nil) async throws -> AcquireResult {
        try await runners.call(RunnersRPC.Acquire.self, AcquireRequest(model: model, keepAlive: keepAlive))
    }

    func release(_ lease: UInt64) async throws {
        _ = try await runners.call(RunnersRPC.Release.self, ReleaseRequest(lease: lease))
    }

    func info(_ model: String) async throws -> RunnerInfo? {
        try await runners.call(RunnersRPC.List.self, Empty()).first { $0.model == model }
    }

    func finish() async {
        for child in [manager, registry].compactMap({ $0 }) where child.isRunning {
            child.signal(SIGTERM, group: false)
            _ = try? await waitExit(child, timeout: 20)
        }
        await runners.close()
        // Safety net: no llama-server of this rig may survive a failed test.
        for record in RunnerRecord.load(paths) where record.process.isAlive { record.process.signal(SIGKILL) }
        removeTree(dir)
    }

    static func with(maxLoaded: Int = 2, ttl: Int = 300, _ body: (RunnerRig) async throws -> Void) async throws {
        let rig = try RunnerRig(maxLoaded: maxLoaded, ttl: ttl)
        do {
            try await rig.start()
            try await body(rig)
        } catch {
            await rig.finish()
            throw error
        }
        await rig.finish()
    }
}

/// llama-server processes on this machine running `model` with this ctx_size.
func llamaServers(ctx: Int) -> [Int32] {
    (listDirectory("/proc") ?? []).compactMap(Int32.init).filter { pid in
        guard let cmd = readFileBytes("/proc/\(pid)/cmdline", maxBytes: 8192) else { return false }
        let args = cmd.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        return args.first?.hasSuffix("llama-server") == true && args.contains(demoModel)
            && zip(args, args.dropFirst()).contains { $0 == "--ctx-size" && $1 == String(ctx) }
            && processState(pid) != "Z"
    }
}

func complete(_ endpoint: String, _ prompt: String, tokens: Int = 8) async throws -> String {
    let port = UInt16(endpoint.split(separator: ":").last!)!
    let client = HTTPClient(address: .tcp(host: "127.0.0.1", port: port))
    defer { client.closeIdle() }
    let body = #"{"prompt": "\#(prompt)", "n_predict": \#(tokens), "temperature": 0}"#
    let r = try await client.send(HTTPClientRequest(method: "POST", target: "/completion", headers: ["Content-Type": "application/json"], body: .bytes(Array(body.utf8))))
    let json = try JSONParser.parse(try await r.collect()).0
    return json["content"]?.stringValue ?? ""
}

@Suite(.serialized) struct RunnerIntegrationTests {
    @Test func aColdLoadIsJoinedByConcurrentAcquiresAndServesRealCompletions() async throws {
        try #require(access(demoModel, R_OK) == 0, "the demo model is missing: run scripts/bootstrap.sh")
        try await RunnerRig.with { rig in
            // Each caller holds its lease briefly, as a request does: the runner serves 4 at once and
            // the rest queue behind them.
            let results = try await withThrowingTaskGroup(of: (AcquireResult, Int).self) { group in
                for _ in 0..<20 {
                    group.addTask {
                        let r = try await rig.acquire("smol-a")
                        let servers = llamaServers(ctx: 512).count
                        try await rig.release(r.lease)
                        return (r, servers)
                    }
                }
                var all: [(AcquireResult, Int)] = []
                for try await r in group { all.append(r) }
                return all
            }
            #expect(results.count == 20)
            #expect(Set(results.map(\.0.endpoint)).count == 1, "one runner for all")
            #expect(results.allSatisfy { $0.1 == 1 }, "exactly one llama-server process at every grant")
            // Requests that arrived during the load report its time; any that arrived after it report 0.
            let waited = results.map(\.0.loadDurationMs).filter { $0 > 0 }
            #expect(waited.count >= 4, "the first grants waited for the one load")
            print("cold load of SmolLM2 through runner-manager: \(waited.max() ?? 0) ms, \(waited.count) of 20 requests joined it")
            let text = try await complete(results[0].0.endpoint, "The capital of France is")
            #expect(text.contains("Paris"), "\(text)")
            let again = try await rig.acquire("smol-a")
            #expect(again.loadDurationMs == 0)
            #expect(again.endpoint == results[0].0.endpoint)
            try await rig.release(again.lease)
            let info = try #require(try await rig.info("smol-a"))
            #expect(info.state == .ready)
            #expect(info.rssBytes ?? 0 > 50 << 20)
            let logs = try await rig.runners.call(RunnersRPC.Logs.self, LogsRequest(model: "smol-a", tail: 500))
            #expect(logs.contains { $0.contains("llama") }, "the runner's log is captured")
        }
    }

    @Test func withOneSlotTheSwapWaitsForTheLeaseToEnd() async throws {
        try await RunnerRig.with(maxLoaded: 1) { rig in
            let a = try await rig.acquire("smol-a")
            let aPid = try #require(try await rig.info("smol-a")?.pid)
            let b = Task { try await rig.acquire("smol-b") }
            try await EventLoop.shared.sleep(seconds: 1.5)
            #expect(try await rig.info("smol-a")?.state == .ready, "a busy runner is never evicted")
            #expect(try await rig.info("smol-a")?.activeLeases == 1)
            #expect(llamaServers(ctx: 1024).isEmpty, "b waits")
            #expect(try await complete(a.endpoint, "Hello").isEmpty == false, "a still serves")
            try await rig.release(a.lease)
            let granted = try await b.value
            #expect(granted.loadDurationMs > 0)
            #expect(!processExists(aPid) || processState(aPid) == "Z" ? true : false, "a was stopped and reaped")
            #expect(llamaServers(ctx: 512).isEmpty)
            #expect(try await rig.info("smol-a")?.state == .stopped)
            try await rig.release(granted.lease)
        }
    }

    @Test func idleRunnersUnloadAfterTheirTTLOrAtOnceWithKeepAliveZero() async throws {
        try await RunnerRig.with { rig in
            let short = try await rig.acquire("smol-short")
            let pid = try #require(try await rig.info("smol-short")?.pid)
            try await rig.release(short.lease)
            try await waitUntil("the 1 s TTL to unload smol-short", timeout: 10) { (try? await rig.info("smol-short"))?.state == .stopped }
            #expect(!processExists(pid))

            let a = try await rig.acquire("smol-a", keepAlive: 0)
            let aPid = try #require(try await rig.info("smol-a")?.pid)
            try await rig.release(a.lease)
            try await waitUntil("keepAlive 0 to unload when idle", timeout: 10) { !processExists(aPid) }
        }
    }

    @Test func aRunnerKilledMidRequestFailsThatRequestAndTheNextAcquireReloads() async throws {
        try await RunnerRig.with { rig in
            let grant = try await rig.acquire("smol-a")
            let pid = try #require(try await rig.info("smol-a")?.pid)
            let port = UInt16(grant.endpoint.split(separator: ":").last!)!
            let client = HTTPClient(address: .tcp(host: "127.0.0.1", port: port))
            let body = #"{"prompt": "Once upon a time", "n_predict": 4000, "temperature": 0, "stream": true}"#
            let stream = try await client.send(HTTPClientRequest(method: "POST", target: "/completion", headers: ["Content-Type": "application/json"], body: .bytes(Array(body.utf8))))
            _ = try await stream.read()
            kill(pid, SIGKILL)
            var failed = false
            do {
                while try await stream.read() != nil {}
            } catch {
                failed = true
            }
            #expect(failed, "the in-flight stream breaks")
            try await waitUntil("the crash to be noticed", timeout: 10) { (try? await rig.info("smol-a"))?.state == .failed }
            #expect(try await rig.info("smol-a")?.detail?.contains("signal 9") == true)
            try await rig.release(grant.lease)  // releasing a failed lease is harmless
            let again = try await rig.acquire("smol-a")
            #expect(again.loadDurationMs > 0, "reloaded")
            #expect(try await rig.info("smol-a")?.pid != pid)
            try await rig.release(again.lease)
        }
    }

    @Test func aRestartedRunnerManagerAdoptsLiveRunnersWithoutReloading() async throws {
        try await RunnerRig.with { rig in
            let first = try await rig.acquire("smol-a")
            let pid = try #require(try await rig.info("smol-a")?.pid)
            try await rig.release(first.lease)
            rig.manager?.signal(SIGKILL, group: false)
            _ = try await waitExit(rig.manager!, timeout: 10)
            #expect(processExists(pid), "the runner outlives its manager")
            try await rig.startManager()
            let again = try await rig.acquire("smol-a")
            #expect(again.loadDurationMs == 0, "adopted, not reloaded")
            #expect(again.endpoint == first.endpoint)
            let info = try #require(try await rig.info("smol-a"))
            #expect(info.pid == pid)
            #expect(info.adopted)
            #expect(try await complete(again.endpoint, "The capital of France is").contains("Paris"))
            try await rig.release(again.lease)
            // A normal stop of runner-manager stops the runner.
            rig.manager?.signal(SIGTERM, group: false)
            _ = try await waitExit(rig.manager!, timeout: 20)
            try await waitUntil("the adopted runner to stop", timeout: 10) { !processExists(pid) }
        }
    }

    @Test func differentLoadParametersRestartTheRunnerOnlyWhenIdle() async throws {
        try await RunnerRig.with { rig in
            let base = try await rig.acquire("smol-a")
            let bigger = Task { try await rig.runners.call(RunnersRPC.Acquire.self, AcquireRequest(model: "smol-a", parameters: .object(JSONObject([("ctx_size", .int(768))])))) }
            try await EventLoop.shared.sleep(seconds: 1)
            #expect(llamaServers(ctx: 768).isEmpty, "the busy runner is not replaced")
            #expect(llamaServers(ctx: 512).count == 1)
            try await rig.release(base.lease)
            let granted = try await bigger.value
            #expect(granted.loadDurationMs > 0)
            #expect(llamaServers(ctx: 768).count == 1)
            #expect(llamaServers(ctx: 512).isEmpty)
            try await rig.release(granted.lease)
        }
    }

    @Test func loadFailuresAndUnknownModelsGiveClearErrors() async throws {
        try await RunnerRig.with { rig in
            await #expect(throws: RPCError.self) { _ = try await rig.acquire("nobody") }
            do {
                _ = try await rig.acquire("nobody")
            } catch RPCError.remote(let fault) {
                #expect(fault.code == RPCFault.notFoundCode)
                #expect(fault.message.contains("smol-a"), "the error lists the models")
            }
            do {
                _ = try await rig.acquire("ghost")
                Issue.record("a missing file must fail")
            } catch RPCError.remote(let fault) {
                #expect(fault.message.contains("run scripts/bootstrap.sh"))
            }
            do {
                _ = try await rig.acquire("smol-broken")
                Issue.record("a runner that cannot start must fail")
            } catch RPCError.remote(let fault) {
                #expect(fault.code == RPCFault.unavailableCode)
                #expect(fault.message.contains("while loading"), "\(fault.message)")
                #expect(fault.message.contains("no-such-flag-xyz") || fault.message.contains("no_such_flag_xyz"), "the runner's own error is shown: \(fault.message)")
            }
            #expect(llamaServers(ctx: 256).isEmpty)
        }
    }
}

@Suite(.serialized) struct LauncherRunnerTests {
    @Test func restartingRunnerManagerKeepsTheRunnerAndCtrlCLeavesNone() async throws {
        try #require(access(demoModel, R_OK) == 0, "the demo model is missing: run scripts/bootstrap.sh")
        try await Mesh.with { mesh in
            try AtomicFile.write(Array(#"{"models": {"smol": {"model_path": "\#(demoModel)", "parameters": {"ctx_size": 384}}}}"#.utf8),
                                 to: mesh.paths.configDir + "/models_config.json")
            try await mesh.up()
            let runners = RPCClient(path: mesh.paths.socket(.runners), defaultTimeout: 60, minBackoff: 0.01, maxBackoff: 0.1)
            runners.start()
            defer { Task { await runners.close() } }
            let loaded = try await runners.call(RunnersRPC.Load.self, AcquireRequest(model: "smol"))
            let pid = try #require(loaded.pid)
            let (exit, output) = try await mesh.run(["restart", "runner-manager"])
            #expect(exit == .exited(0), "\(output)")
            let again = try await runners.call(RunnersRPC.Acquire.self, AcquireRequest(model: "smol"))
            #expect(again.loadDurationMs == 0, "adopted across launcher restart runner-manager")
            #expect(try await runners.call(RunnersRPC.List.self, Empty()).first?.pid == pid)
            _ = try await runners.call(RunnersRPC.Release.self, ReleaseRequest(lease: again.lease))
            #expect(try await mesh.interrupt() == .exited(0))
            #expect(llamaServers(ctx: 384).isEmpty, "Ctrl+C leaves no llama-server behind")
            // An adopted runner is not the new manager's child: once stopped, init reaps it.
            try await waitUntil("the stopped runner to be reaped", timeout: 10) { !processExists(pid) }
        }
    }
}
