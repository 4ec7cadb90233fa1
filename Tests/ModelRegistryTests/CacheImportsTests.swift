import Glibc
import Shared
import Testing
@testable import ModelRegistry

/// Other tools' caches, built here in each tool's own layout (symlinks included), indexed in place:
/// the names each tool gives, the files followed through their links, Ollama's layers as defaults,
/// and nothing in the trees changed.
@Suite struct CacheImportsTests {
    static func gguf(_ path: String) throws {
        try makeDirectories(String(path[..<path.lastIndex(of: "/")!]))
        try GGUFWriter.chat().write(to: path)
    }

    static func link(_ target: String, _ path: String) throws {
        try makeDirectories(String(path[..<path.lastIndex(of: "/")!]))
        guard symlink(target, path) == 0 else { throw SystemError("symlink") }
    }

    /// Every file and link under `dir` with its size and modification time.
    static func tree(_ dir: String) -> [String] {
        var out: [String] = []
        func walk(_ d: String) {
            for name in (listDirectory(d) ?? []).sorted() {
                let p = d + "/" + name
                var st = stat()
                lstat(p, &st)
                out.append("\(p) \(st.st_mode) \(st.st_size) \(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec)")
                if (st.st_mode & S_IFMT) == S_IFDIR { walk(p) }
            }
        }
        walk(dir)
        return out
    }

    @Test func ollamaManifestsLayersAndNames() async throws {
        try await withTemporaryDirectory { root in
            let blobs = root + "/blobs"
            try Self.gguf(blobs + "/sha256-" + String(repeating: "a", count: 64))
            try makeDirectories(blobs)
            try writeFile(blobs + "/sha256-" + String(repeating: "b", count: 64), #"{"num_ctx":8192,"temperature":0.6,"stop":["<|eot_id|>"]}"#)
            try writeFile(blobs + "/sha256-" + String(repeating: "c", count: 64), "You are a pirate.")
            try writeFile(blobs + "/sha256-" + String(repeating: "d", count: 64), "{{ .Prompt }}")
            func manifest(_ layers: [(String, Character)]) -> String {
                let list = layers.map { #"{"mediaType":"application/vnd.ollama.image.\#($0.0)","digest":"sha256:\#(String(repeating: $0.1, count: 64))","size":1}"# }
                return #"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"digest":"sha256:00","size":1},"layers":[\#(list.joined(separator: ","))]}"#
            }
            let full = manifest([("model", "a"), ("params", "b"), ("system", "c"), ("template", "d")])
            for path in ["registry.ollama.ai/library/llama3.2/latest", "registry.ollama.ai/sam/tiny/q4", "hf.co/bartowski/Model-GGUF/Q4_K_M"] {
                try makeDirectories(root + "/manifests/" + String(path[..<path.lastIndex(of: "/")!]))
                try writeFile(root + "/manifests/" + path, full)
            }
            // A cloud stub (no model layer) and a manifest whose blob is gone are not models.
            try makeDirectories(root + "/manifests/registry.ollama.ai/library/cloudy")
            try writeFile(root + "/manifests/registry.ollama.ai/library/cloudy/latest", manifest([("params", "b")]))
            try makeDirectories(root + "/manifests/registry.ollama.ai/library/gone")
            try writeFile(root + "/manifests/registry.ollama.ai/library/gone/latest", manifest([("model", "e")]))
            let before = Self.tree(root)
            let found = CacheImports.ollama(root)
            #expect(found.map(\.id) == ["hf.co/bartowski/Model-GGUF:Q4_K_M", "llama3.2:latest", "sam/tiny:q4"])
            let m = try #require(found.first { $0.id == "llama3.2:latest" })
            #expect(m.source == .ollama && m.path == CacheImports.resolved(blobs + "/sha256-" + String(repeating: "a", count: 64)))
            #expect(m.parameters["ctx_size"] == .int(8192) && m.parameters["temp"] == .double(0.6) && m.parameters["stop"] == nil)
            #expect(m.systemPrompt == "You are a pirate." && m.template == "{{ .Prompt }}")
            #expect(Self.tree(root) == before, "nothing in Ollama's folder changed")
        }
    }

    @Test func lmStudioPublisherRepoFileOnlyWithProjectors() async throws {
        try await withTemporaryDirectory { root in
            try Self.gguf(root + "/lmstudio-community/Qwen-GGUF/qwen-q4_k_m.gguf")
            try Self.gguf(root + "/lmstudio-community/Qwen-GGUF/mmproj-qwen-f16.gguf")
            try Self.gguf(root + "/loose.gguf")                       // directly in models/: ignored by LM Studio
            try Self.gguf(root + "/pub/only-one-level.gguf")          // one level deep: ignored too
            try makeDirectories(root + "/pub/repo")
            try writeFile(root + "/pub/repo/partial.gguf.part", "x")  // a download in progress
            let before = Self.tree(root)
            let found = CacheImports.lmstudio(root)
            #expect(found.map(\.id) == ["lmstudio-community/Qwen-GGUF/qwen-q4_k_m.gguf"])
            #expect(found.first?.mmproj?.hasSuffix("mmproj-qwen-f16.gguf") == true)
            #expect(Self.tree(root) == before)
        }
    }

    @Test func huggingFaceSnapshotsFollowedThroughTheirLinks() async throws {
        try await withTemporaryDirectory { root in
            let repo = root + "/models--TheOrg--Tiny-GGUF"
            let commit = String(repeating: "1", count: 40)
            let sha = String(repeating: "f", count: 64)
            // The shared Xet store: the repo's blob links into it, and the snapshot links to the blob.
            try Self.gguf(root + "/blobs/ab/xethash")
            try Self.link("../../blobs/ab/xethash", repo + "/blobs/" + sha)
            try Self.link("../../blobs/" + sha, repo + "/snapshots/" + commit + "/tiny-Q4_K_M.gguf")
            try Self.gguf(repo + "/snapshots/" + String(repeating: "0", count: 40) + "/old-Q2_K.gguf")
            try makeDirectories(repo + "/refs")
            try writeFile(repo + "/refs/main", commit)
            let before = Self.tree(root)
            let found = CacheImports.huggingFace(root, source: .huggingface)
            #expect(found.map(\.id) == ["hf.co/TheOrg/Tiny-GGUF/tiny-Q4_K_M.gguf"], "the snapshot refs/main names")
            #expect(found.first?.path == CacheImports.resolved(root + "/blobs/ab/xethash"), "both links followed to the real file")
            #expect(Self.tree(root) == before)
        }
    }

    @Test func llamaCppsLegacyFlatCacheAndItsHFLayout() async throws {
        try await withTemporaryDirectory { root in
            try Self.gguf(root + "/bartowski_Tiny-GGUF_tiny-Q4_K_M.gguf")
            try writeFile(root + "/bartowski_Tiny-GGUF_tiny-Q4_K_M.gguf.etag", "\"x\"")
            try Self.gguf(root + "/models--a--b/snapshots/" + String(repeating: "2", count: 40) + "/b-Q8_0.gguf")
            let found = CacheImports.scan(CacheImports.Settings(ollama: nil, lmstudio: nil, huggingface: nil, llamaCpp: root))
            #expect(found.map(\.id).sorted() == ["hf.co/a/b/b-Q8_0.gguf", "llama.cpp/bartowski_Tiny-GGUF_tiny-Q4_K_M"])
            #expect(found.allSatisfy { $0.source == .llamaCpp })
        }
    }

    @Test func settingsTurnSourcesOffOrPointThemElsewhere() {
        let s = CacheImports.settings(from: try? JSONParser.parse(#"{"ollama": false, "lmstudio": "/somewhere/models", "huggingface": true}"#))
        #expect(s.ollama == nil && s.lmstudio == "/somewhere/models" && s.huggingface != nil && s.llamaCpp != nil)
    }

    @Test func oneFileTwiceIsOneModelAndNamesStayUnique() async throws {
        try await withTemporaryDirectory { root in
            try Self.gguf(root + "/hf/models--a--b/snapshots/" + String(repeating: "3", count: 40) + "/m.gguf")
            try Self.link(root + "/hf/models--a--b/snapshots/" + String(repeating: "3", count: 40) + "/m.gguf", root + "/llama/models--a--b/snapshots/" + String(repeating: "3", count: 40) + "/m.gguf")
            let found = CacheImports.scan(CacheImports.Settings(ollama: nil, lmstudio: nil, huggingface: root + "/hf", llamaCpp: root + "/llama"))
            #expect(found.count == 1 && found[0].source == .huggingface)
        }
    }
}
