import Glibc
@testable import Shared

/// Writes small GGUF files with chosen metadata for tests (the layout of ggml's docs/gguf.md):
/// header, key/values, tensor infos, and a little tensor data.
struct GGUFWriter {
    enum Value {
        case u32(UInt32), i32(Int32), u64(UInt64), f32(Float), bool(Bool), string(String)
        case strings([String]), int32s([Int32])
    }

    var version: UInt32 = 3
    var entries: [(String, Value)] = []
    /// Tensor shapes (names generated).
    var tensors: [[UInt64]] = [[4, 4]]

    /// A typical chat model's metadata.
    static func chat(arch: String = "llama", name: String = "Test Model", context: UInt32 = 4096, fileType: UInt32 = 15,
                     vocabulary: Int = 100) -> GGUFWriter {
        var w = GGUFWriter()
        w.entries = [
            ("general.architecture", .string(arch)),
            ("general.name", .string(name)),
            ("general.size_label", .string("1B")),
            ("general.file_type", .u32(fileType)),
            ("\(arch).context_length", .u32(context)),
            ("\(arch).embedding_length", .u32(2048)),
            ("\(arch).block_count", .u32(16)),
            ("\(arch).attention.head_count", .u32(32)),
            ("\(arch).attention.head_count_kv", .u32(8)),
            ("tokenizer.ggml.model", .string("gpt2")),
            ("tokenizer.ggml.tokens", .strings((0..<vocabulary).map { "tok\($0)" })),
            ("tokenizer.chat_template", .string("{% for m in messages %}{{ m.content }}{% endfor %}")),
        ]
        w.tensors = [[2048, 100], [2048]]
        return w
    }

    /// An embedding model (bert with a pooling type).
    static func embedding() -> GGUFWriter {
        var w = GGUFWriter()
        w.entries = [
            ("general.architecture", .string("bert")),
            ("general.name", .string("Embedder")),
            ("general.file_type", .u32(1)),
            ("bert.context_length", .u32(512)),
            ("bert.embedding_length", .u32(384)),
            ("bert.block_count", .u32(6)),
            ("bert.attention.head_count", .u32(12)),
            ("bert.pooling_type", .u32(1)),
            ("tokenizer.ggml.model", .string("bert")),
        ]
        return w
    }

    func bytes() -> [UInt8] {
        var out: [UInt8] = Array("GGUF".utf8)
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { out += $0 } }
        func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { out += $0 } }
        func str(_ s: String) {
            u64(UInt64(s.utf8.count))
            out += Array(s.utf8)
        }
        u32(version)
        u64(UInt64(tensors.count))
        u64(UInt64(entries.count))
        for (key, value) in entries {
            str(key)
            switch value {
            case .u32(let v): u32(4); u32(v)
            case .i32(let v): u32(5); u32(UInt32(bitPattern: v))
            case .u64(let v): u32(10); u64(v)
            case .f32(let v): u32(6); u32(v.bitPattern)
            case .bool(let v): u32(7); out.append(v ? 1 : 0)
            case .string(let v): u32(8); str(v)
            case .strings(let vs):
                u32(9); u32(8); u64(UInt64(vs.count))
                vs.forEach { str($0) }
            case .int32s(let vs):
                u32(9); u32(5); u64(UInt64(vs.count))
                vs.forEach { u32(UInt32(bitPattern: $0)) }
            }
        }
        for (i, dims) in tensors.enumerated() {
            str("tensor.\(i)")
            u32(UInt32(dims.count))
            dims.forEach { u64($0) }
            u32(0)
            u64(0)
        }
        while out.count % 32 != 0 { out.append(0) }
        out += [UInt8](repeating: 0, count: 64)
        return out
    }

    func write(to path: String) throws {
        try AtomicFile.write(bytes(), to: path)
    }
}

func writeFile(_ path: String, _ text: String) throws {
    try AtomicFile.write(Array(text.utf8), to: path)
}

/// A temporary directory for one test, removed afterwards.
func withTemporaryDirectory(_ body: (String) async throws -> Void) async throws {
    let path = try makeTemporaryDirectory(prefix: "lr-reg")
    defer { removeTree(path) }
    try await body(path)
}

/// The repository root (for the committed config files and the demo model).
let repositoryRoot: String = {
    var parts = #filePath.split(separator: "/").map(String.init)
    parts.removeLast(3)  // Tests/ModelRegistryTests/GGUFWriter.swift
    return "/" + parts.joined(separator: "/")
}()
