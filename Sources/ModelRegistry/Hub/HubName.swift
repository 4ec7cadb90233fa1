import Shared

/// A model name as users type it for a pull, read into a Hugging Face repository and what to take
/// from it:
/// - Ollama's `hf.co/{user}/{repo}[:{quant}]` and `huggingface.co/…` (also with `https://`);
/// - plain `{user}/{repo}[:{quant}]`, as llama.cpp's `-hf`;
/// - an explicit file, `{user}/{repo}/{path}.gguf`, or a hub URL `https://huggingface.co/{user}/{repo}/blob/{rev}/{path}`.
struct HubName: Sendable, Equatable {
    /// `user/repo`.
    let repo: String
    /// A quantization tag (matched against file names, case-insensitively).
    let tag: String?
    /// An explicit file path in the repository.
    let file: String?

    /// The model id a pull of this name registers: Ollama's spelling, `hf.co/user/repo:tag`, so
    /// `ollama run` with the name just pulled finds it (without a tag, Ollama's `:latest`, which
    /// every surface accepts on a name without one).
    var modelID: String {
        if let file { return "hf.co/\(repo)/\(file)" }
        if let tag { return "hf.co/\(repo):\(tag)" }
        return "hf.co/\(repo)"
    }

    /// A name the parser refuses, and why.
    struct Invalid: Error, Sendable, Equatable { let message: String }

    static func parse(_ raw: String, quantization: String? = nil) -> Result<HubName, Invalid> {
        var text = raw.trimmingSpaces().description
        func invalid(_ why: String) -> Result<HubName, Invalid> {
            .failure(Invalid(message: "\"\(raw)\" is not a Hugging Face model name: \(why); use hf.co/user/repo[:quant], user/repo[:quant] or user/repo/file.gguf"))
        }
        for prefix in ["https://", "http://"] where text.lowercased().hasPrefix(prefix) { text = String(text.dropFirst(prefix.count)) }
        for host in ["hf.co/", "huggingface.co/", "www.huggingface.co/"] where text.lowercased().hasPrefix(host) {
            text = String(text.dropFirst(host.count))
        }
        var parts = text.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard parts.count >= 2, !parts[0].isEmpty, !parts[1].isEmpty else {
            return invalid(parts.count < 2 ? "it has no user/ part (models from Ollama's own registry, such as \(raw), cannot be pulled here)" : "an empty part")
        }
        var tag: String? = nil
        var file: String? = nil
        if parts.count == 2, let colon = parts[1].lastIndex(of: ":") {
            tag = String(parts[1][parts[1].index(after: colon)...])
            parts[1] = String(parts[1][..<colon])
            if tag?.isEmpty == true { return invalid("an empty tag after ':'") }
        }
        // A hub page URL: user/repo/blob|resolve/<rev>/<path>.
        if parts.count >= 5, parts[2] == "blob" || parts[2] == "resolve" {
            file = parts[4...].joined(separator: "/")
        } else if parts.count > 2 {
            file = parts[2...].joined(separator: "/")
        }
        for (i, part) in parts.prefix(2).enumerated() {
            guard part.utf8.count <= 96, part.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0)) }),
                  !part.hasPrefix("."), !part.hasPrefix("-") else {
                return invalid("\(i == 0 ? "the user" : "the repository") \"\(part)\" may hold only letters, digits, '-', '_' and '.'")
            }
        }
        if let f = file {
            guard f.lowercased().hasSuffix(".gguf"), !f.split(separator: "/").contains(where: { $0 == ".." || $0 == "." || $0.isEmpty }) else {
                return invalid("an explicit file must be a .gguf path inside the repository")
            }
        }
        if tag == nil, let q = quantization?.trimmingSpaces(), !q.isEmpty { tag = String(q) }
        if let t = tag, !t.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0)) }) {
            return invalid("the tag \"\(t)\" may hold only letters, digits, '-', '_' and '.'")
        }
        if tag?.lowercased() == "latest" { tag = nil }
        return .success(HubName(repo: "\(parts[0])/\(parts[1])", tag: tag, file: file))
    }
}

/// A file the hub lists for a repository.
struct HubFile: Sendable, Equatable {
    let path: String
    let size: Int
    /// The LFS oid: the content's SHA-256 (nil for small git files).
    let sha256: String?
}

/// Which files of a repository a pull takes (the rules llama.cpp's `-hf` and the hub's Ollama
/// endpoint follow): the file named, or the first whose name carries the tag (`<tag>.` or `<tag>-`,
/// case-insensitively, or the tag being the whole file name), or without a tag Q4_K_M, then the
/// smallest model; every shard of a split model; and a multimodal projector from the repository.
enum FileSelection {
    struct Choice: Sendable, Equatable {
        /// The model's files, the first shard first.
        let model: [HubFile]
        let projector: HubFile?
    }

    static func isProjector(_ path: String) -> Bool {
        let name = (path.split(separator: "/").last.map(String.init) ?? path).lowercased()
        return name.hasPrefix("mmproj") || name.containsText("-mmproj") || name.containsText(".mmproj")
    }

    static func isAuxiliary(_ path: String) -> Bool {
        let name = path.lowercased()
        return isProjector(path) || name.containsText("imatrix") || name.containsText("mtp-") || name.containsText("eagle3-")
    }

    static func choose(_ files: [HubFile], for name: HubName) -> Result<Choice, HubName.Invalid> {
        let ggufs = files.filter { $0.path.lowercased().hasSuffix(".gguf") }
        let models = ggufs.filter { !isAuxiliary($0.path) }
        // Only the first shard of a split model stands for it.
        let candidates = models.filter { f in
            guard let split = ModelScanner.splitSuffix(stem(f.path)) else { return true }
            return split.index == 1
        }
        let available = candidates.map(\.path)
        func none(_ why: String) -> Result<Choice, HubName.Invalid> {
            .failure(HubName.Invalid(message: "\(why) in \(name.repo); its GGUF files: \(available.isEmpty ? "none" : available.joined(separator: ", "))"))
        }
        guard !candidates.isEmpty else { return none("no GGUF model file") }
        let first: HubFile
        if let wanted = name.file {
            guard let f = ggufs.first(where: { $0.path.lowercased() == wanted.lowercased() }) else { return none("no file \(wanted)") }
            first = f
        } else if let tag = name.tag?.lowercased() {
            let match = candidates.first { f in
                let fileName = (f.path.split(separator: "/").last.map(String.init) ?? f.path).lowercased()
                return fileName == tag || fileName == tag + ".gguf" || fileName.containsText(tag + ".") || fileName.containsText(tag + "-")
            }
            guard let match else { return none("no file for the tag \(name.tag!)") }
            first = match
        } else if let q4 = candidates.first(where: { $0.path.lowercased().containsText("q4_k_m") }) {
            first = q4
        } else {
            first = candidates.min { a, b in shardTotal(a, in: models) < shardTotal(b, in: models) }!
        }
        var model = [first]
        if let split = ModelScanner.splitSuffix(stem(first.path)) {
            let dir = directory(first.path)
            model = (1...split.count).compactMap { i -> HubFile? in
                let part = "\(split.base)-\(zeroPadded(i))-of-\(zeroPadded(split.count)).gguf"
                return models.first { $0.path == (dir.isEmpty ? part : dir + "/" + part) }
            }
            guard model.count == split.count else { return none("an incomplete split model (\(model.count) of \(split.count) parts)") }
        }
        return .success(Choice(model: model, projector: projector(for: first, among: ggufs.filter { isProjector($0.path) })))
    }

    /// The projector beside the model (the same folder, else any), preferring the model's own
    /// precision, then F16, then the smallest.
    static func projector(for model: HubFile, among projectors: [HubFile]) -> HubFile? {
        guard !projectors.isEmpty else { return nil }
        let dir = directory(model.path)
        let near = projectors.filter { directory($0.path) == dir }
        let pool = near.isEmpty ? projectors : near
        let modelName = model.path.lowercased()
        for precision in ["bf16", "f32", "q8_0"] where modelName.containsText(precision) {
            if let p = pool.first(where: { $0.path.lowercased().containsText(precision) }) { return p }
        }
        if let f16 = pool.first(where: { $0.path.lowercased().containsText("f16") && !$0.path.lowercased().containsText("bf16") }) { return f16 }
        return pool.min { $0.size < $1.size }
    }

    static func stem(_ path: String) -> String {
        let name = path.split(separator: "/").last.map(String.init) ?? path
        return name.lowercased().hasSuffix(".gguf") ? String(name.dropLast(5)) : name
    }

    static func directory(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "" }
        return String(path[..<slash])
    }

    static func zeroPadded(_ n: Int) -> String { String.zeroPadded(n, width: 5) }

    /// A model's size, all its shards counted.
    static func shardTotal(_ first: HubFile, in files: [HubFile]) -> Int {
        guard let split = ModelScanner.splitSuffix(stem(first.path)) else { return first.size }
        return files.filter { ModelScanner.splitSuffix(stem($0.path))?.base == split.base && directory($0.path) == directory(first.path) }
            .reduce(0) { $0 + $1.size }
    }
}
