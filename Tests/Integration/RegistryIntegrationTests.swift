import FoundationEssentials
import Glibc
import Synchronization
import Testing
@testable import Shared

/// The real model-registry process: concurrent edits, crashes mid-write, hand edits.
@Suite(.serialized) struct RegistryIntegrationTests {
    /// A registry running alone on a temporary config.
    final class Registry {
        let dir: String
        let paths: RuntimePaths
        var child: ChildProcess?
        let client: RPCClient

        init(models: String = #"{"models": {"m": {"model_path": "m.gguf"}}}"#) throws {
            dir = try makeTemporaryDirectory(prefix: "lr-regi")
            paths = RuntimePaths(stateDir: dir + "/state", configDir: dir + "/config")
            try makeDirectories(paths.configDir)
            try AtomicFile.write(Array(#"{"paths": {"models_dirs": [], "import": {"ollama": false, "lmstudio": false, "huggingface": false, "llama_cpp": false}}, "discovery_interval_seconds": 0}"#.utf8), to: paths.configDir + "/app_config.json")
            try AtomicFile.write(Array(models.utf8), to: paths.configDir + "/models_config.json")
            client = RPCClient(path: paths.socket(.registry), defaultTimeout: 10)
            client.start()
        }

        func start() async throws {
            child = try ChildProcess.spawn(Mesh.binDir + "/model-registry",
                                           arguments: ["--state-dir", paths.stateDir, "--config-dir", paths.configDir],
                                           output: .file(dir + "/registry.out"))
            let pid = child!.pid
            try await waitUntil("registry health", timeout: 30) {
                (try? await self.client.call(ServiceRPC.Health.self, Empty(), timeout: 1))?.pid == pid
            }
        }

        func kill9() async throws {
            child?.signal(SIGKILL, group: false)
            if let child { _ = try await waitExit(child, timeout: 10) }
        }

        func finish() async {
            if let child, child.isRunning {
                child.signal(SIGTERM, group: false)
                _ = try? await waitExit(child, timeout: 10)
            }
            await client.close()
            removeTree(dir)
        }

        var modelsFile: String { paths.configDir + "/models_config.json" }
    }

    @Test func twoHundredConcurrentConflictingWritersLoseNothing() async throws {
        let registry = try Registry()
        do {
            try await registry.start()
            let conflicts = Counter()
            let client = registry.client
            let revisions = try await withThrowingTaskGroup(of: String.self) { group in
                for i in 0..<200 {
                    group.addTask {
                        // Optimistic concurrency as a client does it: retry with the revision the conflict names.
                        var revision = try await client.call(RegistryRPC.Documents.self, Empty()).revision
                        let entry = JSONValue.object(JSONObject([("model_path", .string("w\(i).gguf")),
                                                                 ("parameters", .object(JSONObject([("n", .int(i))])))]))
                        while true {
                            do {
                                return try await client.call(RegistryRPC.UpdateModel.self,
                                                             ModelEdit(revision: revision, id: "w\(i)", entry: entry), timeout: 60).revision
                            } catch RPCError.remote(let fault) where fault.code == RPCFault.conflictCode {
                                conflicts.add()
                                revision = try #require(fault.data?["current"])
                            }
                        }
                    }
                }
                var all: [String] = []
                for try await r in group { all.append(r) }
                return all
            }
            #expect(revisions.count == 200)
            #expect(Set(revisions).count == 200, "every successful write produced a new revision")
            #expect(conflicts.value > 0, "the writers really did conflict")
            let saved = try JSONParser.parse(readFile(registry.modelsFile)!)
            let ids = Set(saved["models"]?.objectValue?.keys ?? [])
            #expect(ids == Set(["m"] + (0..<200).map { "w\($0)" }), "no update was lost")
            let snapshot = try await registry.client.call(RegistryRPC.Snapshot.self, Empty())
            #expect(snapshot.revision == revisions.last ?? "" || revisions.contains(snapshot.revision))
            print("200 writers: \(conflicts.value) conflicts retried, all writes landed")
        } catch {
            await registry.finish()
            throw error
        }
        await registry.finish()
    }

    @Test func killedMidWriteTheFileAlwaysParsesAsAWrittenVersion() async throws {
        let registry = try Registry()
        do {
            var rng = SystemRandomNumberGenerator()
            for round in 0..<6 {
                try await registry.start()
                let attempted = Attempts()
                let client = registry.client
                let writer = Task {
                    var n = round * 10_000
                    while !Task.isCancelled {
                        n += 1
                        attempted.insert(n)
                        guard let docs = try? await client.call(RegistryRPC.Documents.self, Empty(), timeout: 2) else { return }
                        let entry = JSONValue.object(JSONObject([("model_path", .string("m.gguf")),
                                                                 ("parameters", .object(JSONObject([("n", .int(n))])))]))
                        _ = try? await client.call(RegistryRPC.UpdateModel.self, ModelEdit(revision: docs.revision, id: "m", entry: entry), timeout: 2)
                    }
                }
                try await EventLoop.shared.sleep(seconds: Double(Int.random(in: 80...400, using: &rng)) / 1000)
                try await registry.kill9()
                writer.cancel()
                _ = await writer.value
                let text = try #require(readFile(registry.modelsFile))
                let doc = try JSONParser.parse(text)
                let n = doc["models"]?["m"]?["parameters"]?["n"]?.intValue
                if let n {
                    #expect(attempted.contains(n), "round \(round): the file holds a version that was written")
                    let expected = JSONValue.object(JSONObject([("models", .object(JSONObject([("m", .object(JSONObject([
                        ("model_path", .string("m.gguf")), ("parameters", .object(JSONObject([("n", .int(n))])))])))])))]))
                    #expect(doc == expected, "round \(round): the whole file is that version")
                } else {
                    #expect(doc == (try JSONParser.parse(#"{"models": {"m": {"model_path": "m.gguf"}}}"#)), "round \(round): or still the original")
                }
            }
            // A restart cleans up any temporary file a killed writer left behind.
            try await registry.start()
            #expect(!(listDirectory(registry.paths.configDir) ?? []).contains { $0.contains(".tmp.") })
        } catch {
            await registry.finish()
            throw error
        }
        await registry.finish()
    }

    @Test func handEditsArePickedUpLiveAndInvalidOnesDegradeHealth() async throws {
        let registry = try Registry()
        do {
            try await registry.start()
            let notified = Revisions()
            registry.client.onNotification { method, data in
                if method == RegistryRPC.Changed.name, let r = RPCClient.decode(RegistryRPC.Changed.self, from: data) {
                    notified.append(r.revision)
                }
            }
            registry.client.subscribe()
            try await EventLoop.shared.sleep(seconds: 0.2)
            let start = monotonicNanos()
            try AtomicFile.write(Array(#"{"models": {"m": {"model_path": "m.gguf", "aliases": ["em"]}}}"#.utf8), to: registry.modelsFile)
            try await waitUntil("the hand edit to be picked up (1 s poll; 4 s allows for a loaded CI machine)", timeout: 4) { !notified.all.isEmpty }
            print("hand edit picked up after \(Int(Double(monotonicNanos() - start) / 1e6)) ms")
            let snapshot = try await registry.client.call(RegistryRPC.Snapshot.self, Empty())
            #expect(snapshot.models.first?.aliases == ["em"])
            #expect(snapshot.revision == notified.all.last)

            try AtomicFile.write(Array(#"{"models": {"m": {"model_path": "m.gguf", "ttl_seconds": "long"}}}"#.utf8), to: registry.modelsFile)
            try await waitUntil("health to turn degraded", timeout: 3) {
                (try? await registry.client.call(ServiceRPC.Health.self, Empty()))?.status == .degraded
            }
            let health = try await registry.client.call(ServiceRPC.Health.self, Empty())
            #expect(health.detail?.contains(#"models.m.ttl_seconds: expected an integer, got "long""#) == true)
            let status = try await registry.client.call(RegistryRPC.Status.self, Empty())
            #expect(status.files[1].state == .invalid)
            #expect(try await registry.client.call(RegistryRPC.Snapshot.self, Empty()).models.first?.aliases == ["em"], "last good config still served")
        } catch {
            await registry.finish()
            throw error
        }
        await registry.finish()
    }
}

final class Counter: Sendable {
    private let n = Atomic<Int>(0)
    func add() { n.add(1, ordering: .relaxed) }
    var value: Int { n.load(ordering: .relaxed) }
}

final class Attempts: Sendable {
    private let set = Mutex<Set<Int>>([])
    func insert(_ n: Int) { set.withLock { _ = $0.insert(n) } }
    func contains(_ n: Int) -> Bool { set.withLock { $0.contains(n) } }
}

final class Revisions: Sendable {
    private let list = Mutex<[String]>([])
    func append(_ r: String) { list.withLock { $0.append(r) } }
    var all: [String] { list.withLock { $0 } }
}
