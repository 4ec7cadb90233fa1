import Glibc
import Testing
@testable import RunnerManager
@testable import Shared

/// The slot cache's naming, keys, flags and the models it refuses, without a runner; the saves and
/// restores themselves run against a real llama-server in Tests/Python/test_slot_cache.py.
@Suite struct SlotCacheTests {
    static func model(_ id: String = "talk", path: String = "/nonexistent/m.gguf", arch: String? = "llama", mmproj: String? = nil,
                      kind: ModelKind = .chat, runtime: RuntimeKind = .llamaServer, parameters: JSONValue = .object(JSONObject())) -> ResolvedModel {
        let meta = arch.map {
            ModelMetadata(architecture: $0, name: nil, sizeLabel: nil, parameterCount: 0, fileType: nil, quantization: nil, contextLength: nil,
                          embeddingLength: nil, blockCount: nil, headCount: nil, headCountKV: nil, keyLength: nil, valueLength: nil,
                          hasChatTemplate: true, tokenizerModel: nil, isEmbeddingModel: false, fileSize: 0, ggufVersion: 3)
        }
        return ResolvedModel(id: id, aliases: [], displayName: nil, path: path, runtime: "llama-server", runtimeKind: runtime, runtimePath: "llama-server",
                             parameters: parameters, kind: kind, ttlSeconds: nil, unlisted: false, mmproj: mmproj, autoDiscovered: false,
                             autoUpdateModel: false, state: .available, error: nil, metadata: meta)
    }

    @Test func filesNameTheirModelKeyAndSlotAndOtherKeysDoNotMatch() {
        let name = SlotCache.fileName("my model", key: "abc", slot: 3)
        #expect(name == "my_model@abc.s3.bin")
        #expect(SlotCache.slot(of: name, model: "my model", key: "abc") == 3)
        #expect(SlotCache.slot(of: name, model: "my model", key: "abd") == nil)
        #expect(SlotCache.slot(of: name + ".partial", model: "my model", key: "abc") == nil, "a save in progress is not a slot file")
        #expect(SlotCache.slot(of: "my_model@abc.sx.bin", model: "my model", key: "abc") == nil)
    }

    @Test func theKeyChangesWithTheLoadArgumentsAndTheModelFile() throws {
        let dir = try makeTemporaryDirectory(prefix: "slot-key-")
        defer { removeTree(dir) }
        let path = dir + "/m.gguf"
        try AtomicFile.write(Array("one".utf8), to: path)
        let m = Self.model(path: path)
        let key = SlotCache.key(m, fingerprint: "f1")
        #expect(SlotCache.key(m, fingerprint: "f1") == key)
        #expect(SlotCache.key(m, fingerprint: "f2") != key, "other load arguments")
        try AtomicFile.write(Array("a new file".utf8), to: path)
        #expect(SlotCache.key(m, fingerprint: "f1") != key, "the GGUF file was replaced")
    }

    @Test func modelsWhoseStateCannotBeReusedAreNotKept() {
        #expect(SlotCache.unsupported(Self.model()) == nil)
        #expect(SlotCache.unsupported(Self.model(arch: nil)) == nil)
        #expect(SlotCache.unsupported(Self.model(mmproj: "/m/mmproj.gguf"))?.contains("multimodal") == true)
        #expect(SlotCache.unsupported(Self.model(arch: "mamba2"))?.contains("recurrent") == true)
        #expect(SlotCache.unsupported(Self.model(arch: "gemma3"))?.contains("sliding-window") == true)
        #expect(SlotCache.unsupported(Self.model(kind: .embedding)) != nil)
        #expect(SlotCache.unsupported(Self.model(runtime: .whisperServer)) != nil)
    }

    @Test func idleSlotsKeepTheirKVUnlessTheUserSaysOtherwise() {
        let cache = SlotCache(directory: "/state/slots", limitBytes: 1 << 30)
        #expect(cache.arguments(Self.model()) == ["--slot-save-path", "/state/slots", "--no-cache-idle-slots"])
        let own = Self.model(parameters: .object(JSONObject([("cache_idle_slots", .bool(true))])))
        #expect(cache.arguments(own) == ["--slot-save-path", "/state/slots"])
    }

    @Test func pruningDeletesTheOldestFilesFirst() async throws {
        let dir = try makeTemporaryDirectory(prefix: "slot-prune-")
        defer { removeTree(dir) }
        for (i, name) in ["old.bin", "mid.bin", "new.bin"].enumerated() {
            try AtomicFile.write([UInt8](repeating: 1, count: 1000), to: "\(dir)/\(name)")
            var times = [timespec(tv_sec: 1_000_000 + i * 100, tv_nsec: 0), timespec(tv_sec: 1_000_000 + i * 100, tv_nsec: 0)]
            utimensat(AT_FDCWD, "\(dir)/\(name)", &times, 0)
        }
        await SlotCache(directory: dir, limitBytes: 2000).prune()
        #expect((listDirectory(dir) ?? []).sorted() == ["mid.bin", "new.bin"])
    }
}
