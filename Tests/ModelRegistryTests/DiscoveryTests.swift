import Glibc
import Testing
@testable import ModelRegistry
@testable import Shared

/// Discovery over generated model trees, through the real store (files on disk).
@Suite struct DiscoveryTests {
    /// A config dir and a models dir beside it, as in the repository layout.
    func layout(_ dir: String, models: String = #"{"models": {}}"#) throws -> (config: String, models: String) {
        let config = dir + "/config"
        let modelsDir = dir + "/models"
        try makeDirectories(config)
        try makeDirectories(modelsDir)
        try writeFile(config + "/app_config.json", #"{"paths": {"models_dirs": ["../models"], "import": {"ollama": false, "lmstudio": false, "huggingface": false, "llama_cpp": false}}, "discovery_interval_seconds": 0}"#)
        try writeFile(config + "/models_config.json", models)
        return (config, modelsDir)
    }

    func store(_ config: String) throws -> RegistryStore {
        try RegistryStore(configDir: config, logger: Logger(service: "test", level: .error, toStderr: false)) { _ in }
    }

    @Test func findsNestedModelsProjectorsAndSplitsAndSurvivesSymlinkLoops() async throws {
        try await withTemporaryDirectory { dir in
            let (config, models) = try layout(dir)
            try makeDirectories(models + "/org/Llama-3.2-1B")
            try GGUFWriter.chat().write(to: models + "/org/Llama-3.2-1B/Llama-3.2-1B-Instruct-Q4_K_M.gguf")
            try makeDirectories(models + "/vision")
            try GGUFWriter.chat(name: "Vision").write(to: models + "/vision/gemma-3-4b-it-Q4_K_M.gguf")
            try GGUFWriter.chat(name: "Projector").write(to: models + "/vision/mmproj-gemma-3-4b-F16.gguf")
            try makeDirectories(models + "/big")
            for part in 1...3 {
                try GGUFWriter.chat(name: "Big").write(to: models + "/big/Qwen3-235B-A22B-Q2_K-0000\(part)-of-00003.gguf")
            }
            try GGUFWriter.embedding().write(to: models + "/nomic-embed-text-v1.5.F16.gguf")
            try makeDirectories(models + "/a/b/c/d/e")
            try GGUFWriter.chat().write(to: models + "/a/b/c/d/deep-enough.gguf")
            try GGUFWriter.chat().write(to: models + "/a/b/c/d/e/too-deep.gguf")
            symlink(models, models + "/org/loop")  // a loop back to the top
            try writeFile(models + "/notes.txt", "not a model")
            var corrupt = GGUFWriter.chat().bytes()
            corrupt = Array(corrupt[0..<100])
            try AtomicFile.write(corrupt, to: models + "/broken.gguf")

            let registry = try store(config)
            let report = await registry.discover()
            #expect(Set(report.added) == ["llama-3.2-1b-instruct-q4_k_m", "gemma-3-4b-it-q4_k_m", "qwen3-235b-a22b-q2_k",
                                          "nomic-embed-text-v1.5.f16", "deep-enough"])
            #expect(report.unreadable.count == 1)
            #expect(report.unreadable.first?.contains("broken.gguf") == true)
            #expect(report.unreadable.first?.contains("truncated") == true)

            let snapshot = await registry.snapshot()
            let byID = Dictionary(uniqueKeysWithValues: snapshot.models.map { ($0.id, $0) })
            #expect(byID["gemma-3-4b-it-q4_k_m"]?.mmproj == models + "/vision/mmproj-gemma-3-4b-F16.gguf")
            #expect(byID["qwen3-235b-a22b-q2_k"]?.path == models + "/big/Qwen3-235B-A22B-Q2_K-00001-of-00003.gguf")
            #expect(byID["nomic-embed-text-v1.5.f16"]?.kind == .embedding)
            #expect(byID["nomic-embed-text-v1.5.f16"]?.parameters["embeddings"] == .bool(true))
            #expect(byID["llama-3.2-1b-instruct-q4_k_m"]?.kind == .chat)
            #expect(snapshot.models.allSatisfy { $0.autoDiscovered && $0.state == .available })

            // Saved with relative paths; a second scan finds nothing new.
            let saved = try JSONParser.parse(readFile(config + "/models_config.json")!)
            #expect(saved["models"]?["deep-enough"]?["model_path"]?.stringValue == "../models/a/b/c/d/deep-enough.gguf")
            #expect(await registry.discover().added.isEmpty)
        }
    }

    @Test func nameCollisionsGetASuffix() async throws {
        try await withTemporaryDirectory { dir in
            let (config, models) = try layout(dir, models: #"{"models": {"phi-4": {"model_path": "elsewhere.gguf", "aliases": ["phi-4-2"]}}}"#)
            try makeDirectories(models + "/one")
            try makeDirectories(models + "/two")
            try GGUFWriter.chat().write(to: models + "/one/Phi-4.gguf")
            try GGUFWriter.chat().write(to: models + "/two/phi 4.gguf")
            let report = await (try store(config)).discover()
            #expect(report.added == ["phi-4-3", "phi-4-4"])
            #expect(report.missing == ["phi-4"])
        }
    }

    @Test func existingEntriesAreNeverChangedByRescans() async throws {
        try await withTemporaryDirectory { dir in
            let (config, models) = try layout(dir)
            try GGUFWriter.chat().write(to: models + "/m.gguf")
            let registry = try store(config)
            _ = await registry.discover()
            // The user tunes the discovered entry.
            let rev = await registry.revision
            var entry = try #require(await registry.models["models"]?["m"])
            entry["parameters"] = .object(JSONObject([("ctx_size", .int(16384)), ("temp", .double(0.2))]))
            entry["display_name"] = .string("My model")
            _ = try await registry.updateModel(ModelEdit(revision: rev, id: "m", entry: entry))
            let before = readFile(config + "/models_config.json")
            for _ in 0..<3 { _ = await registry.discover() }
            #expect(readFile(config + "/models_config.json") == before)
            let m = try #require(await registry.snapshot().models.first)
            #expect(m.parameters == .object(JSONObject([("ctx_size", .int(16384)), ("temp", .double(0.2))])))
            #expect(m.displayName == "My model")
        }
    }

    @Test func aMissingFileIsMarkedNotDeletedAndAutoUpdateFollowsAMove() async throws {
        try await withTemporaryDirectory { dir in
            let (config, models) = try layout(dir, models: #"""
            {"models": {
              "follows": {"model_path": "../models/follow.gguf", "auto_update_model": true},
              "stays": {"model_path": "../models/stay.gguf", "auto_update_model": false}
            }}
            """#)
            try GGUFWriter.chat().write(to: models + "/follow.gguf")
            try GGUFWriter.chat().write(to: models + "/stay.gguf")
            let registry = try store(config)
            #expect(await registry.discover().added.isEmpty)

            try makeDirectories(models + "/moved")
            rename(models + "/follow.gguf", models + "/moved/follow.gguf")
            rename(models + "/stay.gguf", models + "/moved/stay.gguf")
            let report = await registry.discover()
            #expect(report.updated == ["follows"])
            #expect(report.added == ["stay"])
            #expect(report.missing == ["stays"])
            let snapshot = await registry.snapshot()
            #expect(snapshot.models.first { $0.id == "follows" }?.path == models + "/moved/follow.gguf")
            #expect(snapshot.models.first { $0.id == "stays" }?.state == .missing)
            #expect(snapshot.models.count == 3, "the missing entry is kept")
        }
    }

    @Test func idsFromStems() {
        #expect(ModelScanner.id(fromStem: "Meta-Llama-3.1-8B-Instruct-Q4_K_M") == "meta-llama-3.1-8b-instruct-q4_k_m")
        #expect(ModelScanner.id(fromStem: "  weird  name!! ") == "weird-name")
        #expect(ModelScanner.id(fromStem: "???") == "model")
        #expect(ModelScanner.splitSuffix("x-00002-of-00003")! == ("x", 2, 3))
        #expect(ModelScanner.splitSuffix("x-2-of-3") == nil)
        #expect(relativePath("/repo/models/a.gguf", from: "/repo/config") == "../models/a.gguf")
        #expect(relativePath("/data/models/a.gguf", from: "/repo/config") == "/data/models/a.gguf")
    }
}
