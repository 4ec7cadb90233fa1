import Shared
import Testing
@testable import ModelRegistry

/// Names users type for a pull, and which files of a repository a pull takes.
@Suite struct HubNameTests {
    static func parse(_ s: String, _ q: String? = nil) -> HubName? { try? HubName.parse(s, quantization: q).get() }

    @Test func spellingsOfOneModel() {
        for s in ["hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M", "huggingface.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M",
                  "https://huggingface.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M", "bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M"] {
            #expect(Self.parse(s) == HubName(repo: "bartowski/Llama-3.2-1B-Instruct-GGUF", tag: "Q4_K_M", file: nil), "\(s)")
        }
        #expect(Self.parse("hf.co/a/b")?.modelID == "hf.co/a/b")
        #expect(Self.parse("hf.co/a/b:latest")?.tag == nil, "Ollama's latest is no tag")
        #expect(Self.parse("a/b", "q8_0")?.modelID == "hf.co/a/b:q8_0", "LM Studio's quantization")
        #expect(Self.parse("a/b/sub/file-Q4_K_M.gguf") == HubName(repo: "a/b", tag: nil, file: "sub/file-Q4_K_M.gguf"))
        #expect(Self.parse("https://huggingface.co/a/b/blob/main/x.gguf")?.file == "x.gguf")
    }

    @Test(arguments: ["llama3.2", "a/", "/b", "a/b c", "a/b:", "a/b/../x.gguf", "a/b/readme.md", "a/b:tag with space", "-a/b", "a/.b"])
    func refused(_ s: String) {
        #expect(Self.parse(s) == nil, "\(s)")
    }
}

@Suite struct FileSelectionTests {
    static func files(_ names: [(String, Int)]) -> [HubFile] { names.map { HubFile(path: $0.0, size: $0.1, sha256: String(repeating: "a", count: 64)) } }
    static let repo = files([("m-Q2_K.gguf", 50), ("m-Q4_K_M.gguf", 80), ("m-Q8_0.gguf", 140), ("mmproj-m-f16.gguf", 30),
                             ("mmproj-m-bf16.gguf", 30), ("imatrix.gguf", 1), ("README.md", 2)])

    static func choose(_ files: [HubFile], _ name: String) -> FileSelection.Choice? {
        guard let n = try? HubName.parse(name).get() else { return nil }
        return try? FileSelection.choose(files, for: n).get()
    }

    @Test func aTagNoTagAndAnExplicitFile() {
        #expect(Self.choose(Self.repo, "a/b:q8_0")?.model.map(\.path) == ["m-Q8_0.gguf"], "case-insensitive")
        #expect(Self.choose(Self.repo, "a/b")?.model.map(\.path) == ["m-Q4_K_M.gguf"], "no tag: Q4_K_M")
        #expect(Self.choose(Self.repo, "a/b/m-Q2_K.gguf")?.model.map(\.path) == ["m-Q2_K.gguf"])
        #expect(Self.choose(Self.repo, "a/b")?.projector?.path == "mmproj-m-f16.gguf", "F16 by default")
        #expect(Self.choose(Self.files([("x-F16.gguf", 9), ("x-Q3_K_S.gguf", 5), ("x-Q6_K.gguf", 7)]), "a/b")?.model.map(\.path) == ["x-Q3_K_S.gguf"],
                "no Q4_K_M: the smallest")
        #expect(Self.choose(Self.repo, "a/b:Q5_K_M") == nil)
        #expect(Self.choose(Self.files([("README.md", 1)]), "a/b") == nil)
    }

    @Test func everyShardOfASplitModel() {
        let split = Self.files([("big/m-Q4_K_M-00001-of-00003.gguf", 10), ("big/m-Q4_K_M-00002-of-00003.gguf", 10),
                                ("big/m-Q4_K_M-00003-of-00003.gguf", 10), ("m-Q8_0.gguf", 100)])
        #expect(Self.choose(split, "a/b")?.model.map(\.path) == ["big/m-Q4_K_M-00001-of-00003.gguf", "big/m-Q4_K_M-00002-of-00003.gguf",
                                                                  "big/m-Q4_K_M-00003-of-00003.gguf"])
        #expect(Self.choose(Array(split.dropFirst(2)) + Array(split.prefix(1)), "a/b") == nil, "a missing part is an error")
    }

    @Test func hubHeaders() {
        #expect(HubClient.nextLink(["<https://h/api/x?cursor=abc>; rel=\"next\""]) == "https://h/api/x?cursor=abc")
        #expect(HubClient.nextLink(["<https://h/a>; rel=\"prev\""]) == nil)
        #expect(HubClient.etag("\"" + String(repeating: "AB", count: 32) + "\"") == String(repeating: "ab", count: 32))
        #expect(HubClient.etag("W/\"123\"") == nil)
        #expect(HubClient.rateLimitReset("\"resolvers\";r=0;t=42") == 42)
    }
}
