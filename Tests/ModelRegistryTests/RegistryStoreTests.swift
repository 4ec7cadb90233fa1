import Glibc
import Synchronization
import Testing
@testable import ModelRegistry
@testable import Shared

/// Revisions published by a store, in order.
final class Changes: Sendable {
    private let list = Mutex<[String]>([])
    func append(_ r: String) { list.withLock { $0.append(r) } }
    func withLock<R>(_ body: (inout [String]) -> R) -> R { list.withLock { body(&$0) } }
}

@Suite struct RegistryStoreTests {
    func setUp(_ dir: String) throws -> (config: String, store: RegistryStore, changes: Changes) {
        let config = dir + "/config"
        try makeDirectories(config)
        try writeFile(config + "/app_config.json", #"{"paths": {"models_dirs": [], "import": {"ollama": false, "lmstudio": false, "huggingface": false, "llama_cpp": false}}, "discovery_interval_seconds": 0}"#)
        try writeFile(config + "/models_config.json", #"{"default_model": "a", "models": {"a": {"model_path": "a.gguf"}}}"#)
        let changes = Changes()
        let store = try RegistryStore(configDir: config, logger: Logger(service: "test", level: .error, toStderr: false)) { rev in
            changes.append(rev)
        }
        return (config, store, changes)
    }

    func entry(_ path: String, ctx: Int = 2048) -> JSONValue {
        .object(JSONObject([("model_path", .string(path)), ("parameters", .object(JSONObject([("ctx_size", .int(ctx))])))]))
    }

    @Test func editsNeedTheCurrentRevisionAndAreNotified() async throws {
        try await withTemporaryDirectory { dir in
            let (config, store, changes) = try setUp(dir)
            let r0 = await store.revision
            let r1 = try await store.updateModel(ModelEdit(revision: r0, id: "b", entry: entry("b.gguf"))).revision
            #expect(r1 != r0)
            #expect(changes.withLock { $0 } == [r1])
            // A writer still holding r0 gets a conflict naming the current revision, and changes nothing.
            let before = readFile(config + "/models_config.json")
            let conflict = try await #require(throws: RPCFault.self) {
                try await store.updateModel(ModelEdit(revision: r0, id: "c", entry: entry("c.gguf")))
            }
            #expect(conflict.code == RPCFault.conflictCode)
            #expect(conflict.data?["current"] == r1)
            #expect(conflict.message.contains(r1))
            #expect(readFile(config + "/models_config.json") == before)
            // Removing the default model is refused by validation.
            let refused = try await #require(throws: RPCFault.self) { try await store.removeModel(ModelEdit(revision: r1, id: "a")) }
            #expect(refused.code == RPCFault.validationCode)
            #expect(refused.message == "models_config.json: default_model: model \"a\" does not exist (models: b)")
            let r2 = try await store.removeModel(ModelEdit(revision: r1, id: "b")).revision
            #expect(await store.snapshot().models.map(\.id) == ["a"])
            #expect(r2 == r0, "the same content has the same revision")
        }
    }

    @Test func anInvalidEditIsRefusedAndTheFileIsUntouched() async throws {
        try await withTemporaryDirectory { dir in
            let (config, store, changes) = try setUp(dir)
            let before = readFileBytes(config + "/models_config.json")
            let rev = await store.revision
            var bad = entry("b.gguf")
            bad["parameters"] = .object(JSONObject([("ctx_size", .string("16k"))]))
            let fault = try await #require(throws: RPCFault.self) { try await store.updateModel(ModelEdit(revision: rev, id: "b", entry: bad)) }
            #expect(fault.code == RPCFault.validationCode)
            #expect(fault.message == #"models_config.json: models.b.parameters.ctx_size: expected an integer, got "16k""#)
            let appFault = try await #require(throws: RPCFault.self) {
                try await store.updateApp(DocumentEdit(revision: rev, value: try JSONParser.parse(#"{"proxies": {"ollama": {"port": 0}}}"#)))
            }
            #expect(appFault.message == "app_config.json: proxies.ollama.port: expected an integer from 1 to 65535, got 0")
            #expect(readFileBytes(config + "/models_config.json") == before)
            #expect(await store.revision == rev)
            #expect(changes.withLock { $0 }.isEmpty)
            #expect(await store.backups().isEmpty, "nothing written, nothing backed up")
        }
    }

    @Test func everyWriteIsBackedUpTheNewest20KeptAndRestoreWorks() async throws {
        try await withTemporaryDirectory { dir in
            let (config, store, _) = try setUp(dir)
            let original = readFile(config + "/models_config.json")!
            for ctx in 1...25 {
                let rev = await store.revision
                _ = try await store.updateModel(ModelEdit(revision: rev, id: "a", entry: entry("a.gguf", ctx: ctx * 100)))
            }
            let backups = await store.backups()
            #expect(backups.count == 20)
            #expect(backups.allSatisfy { $0.file == "models_config.json" })
            #expect(backups == backups.sorted { $0.createdAt >= $1.createdAt })
            // The newest backup is the version before the last write (ctx 2400).
            let newest = try JSONParser.parse(readFile(config + "/backups/" + backups[0].name)!)
            #expect(newest["models"]?["a"]?["parameters"]?["ctx_size"] == .int(2400))
            #expect(!backups.contains { readFile(config + "/backups/" + $0.name) == original }, "the oldest backups were pruned")

            // Restore the newest backup; the current file is backed up first.
            let current = readFile(config + "/models_config.json")!
            _ = try await store.restore(RestoreRequest(name: backups[0].name))
            #expect(await store.snapshot().models.first?.parameters["ctx_size"] == .int(2400))
            let after = await store.backups()
            #expect(readFile(config + "/backups/" + after[0].name) == current)
            // Names outside backups/ are refused.
            await #expect(throws: RPCFault.self) { try await store.restore(RestoreRequest(name: "../app_config.json")) }
        }
    }

    @Test func handEditsArePickedUpAndInvalidOnesKeepTheLastGoodConfig() async throws {
        try await withTemporaryDirectory { dir in
            let (config, store, changes) = try setUp(dir)
            let goodRevision = await store.revision
            try writeFile(config + "/models_config.json", #"{"default_model": "a", "models": {"a": {"model_path": "a.gguf", "aliases": ["alpha"]}}}"#)
            await store.checkForHandEdits()
            #expect(await store.snapshot().models.first?.aliases == ["alpha"])
            #expect(changes.withLock { $0.count } == 1)
            let editedRevision = await store.revision
            #expect(editedRevision != goodRevision)

            try writeFile(config + "/models_config.json", #"{"default_model": "a", "models": {"a": {"model_path": 7}}}"#)
            await store.checkForHandEdits()
            #expect(await store.revision == editedRevision, "the last good config stays in force")
            #expect(await store.snapshot().models.first?.aliases == ["alpha"])
            let status = await store.status()
            #expect(status.files[1].state == .invalid)
            #expect(status.files[1].errors == ["models_config.json: models.a.model_path: expected a non-empty string, got 7"])
            #expect(await store.problems().count == 1)

            try writeFile(config + "/models_config.json", "{ broken")
            await store.checkForHandEdits()
            let syntax = await store.status().files[1].errors
            #expect(syntax.first?.hasPrefix("models_config.json: invalid JSON: line 1 column 3") == true, "\(syntax)")

            // Fixing the file clears the error.
            try writeFile(config + "/models_config.json", #"{"default_model": "a", "models": {"a": {"model_path": "a.gguf"}}}"#)
            await store.checkForHandEdits()
            #expect(await store.status().files[1].state == .ok)
            #expect(await store.problems().isEmpty)
            #expect(await store.revision == goodRevision)
        }
    }

    @Test func aPinnedSetThatCannotFitTheMemoryBudgetIsRefusedNamingModelsAndBudget() async throws {
        try await withTemporaryDirectory { dir in
            let config = dir + "/config"
            try makeDirectories(config)
            try GGUFWriter.chat(context: 4096).write(to: dir + "/m.gguf")
            // Each estimate is at least the 128 MiB overhead: two pinned models need more than 200 MB.
            try writeFile(config + "/app_config.json", #"{"paths": {"models_dirs": [], "import": {"ollama": false, "lmstudio": false, "huggingface": false, "llama_cpp": false}}, "discovery_interval_seconds": 0, "limits": {"memory_budget": 200000000}}"#)
            try writeFile(config + "/models_config.json", #"{"models": {"a": {"model_path": "../m.gguf", "pinned": true}, "b": {"model_path": "../m.gguf"}}}"#)
            let store = try RegistryStore(configDir: config, logger: Logger(service: "test", level: .error, toStderr: false)) { _ in }
            let before = readFile(config + "/models_config.json")
            let pinnedB = JSONValue.object(JSONObject([("model_path", .string("../m.gguf")), ("pinned", .bool(true))]))
            let refused = try await #require(throws: RPCFault.self) {
                try await store.updateModel(ModelEdit(revision: await store.revision, id: "b", entry: pinnedB))
            }
            #expect(refused.code == RPCFault.validationCode)
            #expect(refused.message.hasPrefix("models_config.json: models: the pinned models a ("), "\(refused.message)")
            #expect(refused.message.contains("but limits.memory_budget is 0.2 GB"), "\(refused.message)")
            #expect(readFile(config + "/models_config.json") == before)
            // With room for both, the same edit goes through.
            let app = try JSONParser.parse(#"{"paths": {"models_dirs": [], "import": {"ollama": false, "lmstudio": false, "huggingface": false, "llama_cpp": false}}, "discovery_interval_seconds": 0, "limits": {"memory_budget": 4000000000}}"#)
            _ = try await store.updateApp(DocumentEdit(revision: await store.revision, value: app))
            _ = try await store.updateModel(ModelEdit(revision: await store.revision, id: "b", entry: pinnedB))
            #expect(await store.snapshot().models.filter(\.pinned).map(\.id).sorted() == ["a", "b"])
        }
    }

    @Test func metadataIsCachedOnDiskAndUsedWhileTheFileIsUnchanged() async throws {
        try await withTemporaryDirectory { dir in
            let config = dir + "/config"
            try makeDirectories(config)
            try GGUFWriter.chat(context: 4096).write(to: dir + "/m.gguf")
            try writeFile(config + "/app_config.json", #"{"paths": {"models_dirs": [], "import": {"ollama": false, "lmstudio": false, "huggingface": false, "llama_cpp": false}}, "discovery_interval_seconds": 0}"#)
            try writeFile(config + "/models_config.json", #"{"models": {"m": {"model_path": "../m.gguf"}}}"#)
            let cache = MetadataCacheFile(path: dir + "/state/cache/model-metadata.json")
            func open() throws -> RegistryStore {
                try RegistryStore(configDir: config, logger: Logger(service: "test", level: .error, toStderr: false), cacheFile: cache) { _ in }
            }
            let parsed = try await open().snapshot().models.first?.metadata
            #expect(parsed?.contextLength == 4096)
            let path = absolutePath(dir + "/m.gguf")
            #expect(try await open().snapshot().models.first?.metadata == parsed, "the cached copy round-trips exactly")
            let saved = try #require(cache.load()[path])
            #expect(saved.stamp == FileStamp.of(path))
            // A restart reads the cache, not the file: a doctored entry with the file's own stamp shows through.
            var doctored = try #require(saved.value.objectValue)
            var entries = try #require(doctored["entries"]?.objectValue)
            entries["llama.context_length"] = .int(777)
            doctored["entries"] = .object(entries)
            try cache.save([path: .init(stamp: saved.stamp, value: .object(doctored))])
            #expect(try await open().snapshot().models.first?.metadata?.contextLength == 777)
            // A changed file is read again, and the cache follows it.
            usleep(10_000)  // a new modification time even on coarse clocks
            try GGUFWriter.chat(context: 8192).write(to: dir + "/m.gguf")
            #expect(try await open().snapshot().models.first?.metadata?.contextLength == 8192)
            #expect(cache.load()[path]?.stamp == FileStamp.of(path))
            // A corrupt cache file is ignored (and rewritten), never fatal.
            try writeFile(cache.path, "{not json")
            #expect(try await open().snapshot().models.first?.metadata?.contextLength == 8192)
            #expect(cache.load()[path] != nil)
        }
    }

    @Test func whisperModelsAreCheckedByTheirHeaderAndTakeNoDefaultParameters() async throws {
        try await withTemporaryDirectory { dir in
            let config = dir + "/config"
            try makeDirectories(config)
            var header = [UInt8]()
            for v: Int32 in [0x6767_6d6c, 51864, 1500, 384, 6, 4, 448, 384, 6, 4, 80, 1] { withUnsafeBytes(of: v.littleEndian) { header += $0 } }
            try AtomicFile.write(header, to: dir + "/good.bin")
            try writeFile(dir + "/gguf.bin", "GGUF and the rest of a llama model, not a whisper one.......")
            try writeFile(config + "/app_config.json", #"{"paths": {"models_dirs": [], "import": {"ollama": false, "lmstudio": false, "huggingface": false, "llama_cpp": false}}, "discovery_interval_seconds": 0}"#)
            try writeFile(config + "/models_config.json", """
                {"default_parameters": {"ctx_size": 2048}, "models": {
                  "good": {"model_path": "../good.bin", "llama_cpp_runtime": "whisper-server", "parameters": {"threads": 2}},
                  "wrong": {"model_path": "../gguf.bin", "llama_cpp_runtime": "whisper-server"},
                  "gone": {"model_path": "../gone.bin", "llama_cpp_runtime": "whisper-server"}}}
                """)
            let store = try RegistryStore(configDir: config, logger: Logger(service: "test", level: .error, toStderr: false)) { _ in }
            let models = Dictionary(uniqueKeysWithValues: await store.snapshot().models.map { ($0.id, $0) })
            #expect(models["good"]?.state == .available)
            #expect(models["good"]?.kind == .audio)
            #expect(models["good"]?.parameters == .object(JSONObject([("threads", .int(2))])), "default_parameters are llama-server flags")
            #expect(models["wrong"]?.state == .unreadable)
            #expect(models["wrong"]?.error?.contains("not a whisper.cpp ggml model") == true)
            #expect(models["gone"]?.state == .missing)
        }
    }

    @Test func missingFilesUseTheBuiltInDefaults() async throws {
        try await withTemporaryDirectory { dir in
            let store = try RegistryStore(configDir: dir, logger: Logger(service: "test", level: .error, toStderr: false)) { _ in }
            let snapshot = await store.snapshot()
            #expect(snapshot.defaultModel == "smollm2-135m-instruct")
            #expect(snapshot.models.first?.path == absolutePath(dir + "/../models/SmolLM2-135M-Instruct.Q4_1.gguf"))
            #expect(await store.status().files.map(\.state) == [.default, .default])
            #expect(await store.appConfig == AppConfig())
        }
    }

    @Test func anInvalidFileAtStartIsAConfigErrorListingEveryFault() async throws {
        try await withTemporaryDirectory { dir in
            try writeFile(dir + "/app_config.json", #"{"limits": {"max_loaded_models": 0}}"#)
            try writeFile(dir + "/models_config.json", #"{"default_model": "nope", "models": {}}"#)
            let error = try #require(throws: ConfigError.self) {
                _ = try RegistryStore(configDir: dir, logger: Logger(service: "test", level: .error, toStderr: false)) { _ in }
            }
            #expect(error.description == """
            app_config.json: limits.max_loaded_models: expected an integer ≥ 1, got 0
            models_config.json: default_model: model "nope" does not exist (no models are defined)
            """)
        }
    }
}
