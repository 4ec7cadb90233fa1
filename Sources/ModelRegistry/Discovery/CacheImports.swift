import Glibc
import Shared

/// A model found in another tool's cache, used where it lies: never copied, never written to (Ollama
/// deletes blobs that no manifest names, so nothing may be added to its folders either).
struct ImportedModel: Sendable, Equatable {
    /// The name the tool gives it.
    let id: String
    let source: ModelSource
    /// The GGUF file (the first shard of a split model), symlinks followed.
    let path: String
    let mmproj: String?
    /// llama-server options the tool's own defaults translate to (Ollama's `params` layer).
    let parameters: JSONObject
    /// Ollama's `system` and `template` layers.
    let systemPrompt: String?
    let template: String?
}

/// Where the other tools keep models, as each tool finds its own folder, and the scanners that read
/// them. Everything here only reads: `stat`, `readdir`, `readlink` and small JSON files.
enum CacheImports {
    /// Which caches to index (`paths.import`): each one on (its default folder), off, or a folder.
    struct Settings: Sendable, Equatable {
        var ollama: String?
        var lmstudio: String?
        var huggingface: String?
        var llamaCpp: String?
    }

    static func env(_ name: String) -> String? { getenv(name).map { String(cString: $0) }.flatMap { $0.isEmpty ? nil : $0 } }
    static var home: String { env("HOME") ?? "/" }

    /// The folders in force: a configured one, else the tool's own default; nil when turned off.
    static func settings(from value: JSONValue?) -> Settings {
        func pick(_ key: String, _ fallback: () -> String?) -> String? {
            switch value?[key] {
            case .bool(false)?: return nil
            case .string(let s)?: return s
            default: return fallback()
            }
        }
        return Settings(
            ollama: pick("ollama") { env("OLLAMA_MODELS") ?? home + "/.ollama/models" },
            lmstudio: pick("lmstudio") { lmStudioModels() },
            huggingface: pick("huggingface") { huggingFaceCache() },
            llamaCpp: pick("llama_cpp") { env("LLAMA_CACHE") ?? (env("XDG_CACHE_HOME") ?? home + "/.cache") + "/llama.cpp" })
    }

    /// LM Studio's models folder: `<home>/models`, the home named by `~/.lmstudio-home-pointer`, else
    /// the older `~/.cache/lm-studio` when it exists, else `~/.lmstudio`.
    static func lmStudioModels() -> String {
        if let pointer = readFile(home + "/.lmstudio-home-pointer", maxBytes: 4096)?.trimmingCharacters(in: " \t\n\r"), !pointer.isEmpty {
            return String(pointer) + "/models"
        }
        let legacy = home + "/.cache/lm-studio"
        if isDirectory(legacy) { return legacy + "/models" }
        return home + "/.lmstudio/models"
    }

    /// The Hugging Face hub cache, in the order the Hugging Face tools look.
    static func huggingFaceCache() -> String {
        if let c = env("HF_HUB_CACHE") ?? env("HUGGINGFACE_HUB_CACHE") { return c }
        if let h = env("HF_HOME") { return h + "/hub" }
        return (env("XDG_CACHE_HOME") ?? home + "/.cache") + "/huggingface/hub"
    }

    /// Every cache's models. Names are unique: a clash within or between caches gets `-2`, `-3`…
    static func scan(_ s: Settings) -> [ImportedModel] {
        var all: [ImportedModel] = []
        if let root = s.ollama { all += ollama(root) }
        if let root = s.lmstudio { all += lmstudio(root) }
        if let root = s.huggingface { all += huggingFace(root, source: .huggingface) }
        if let root = s.llamaCpp { all += huggingFace(root, source: .llamaCpp) + llamaCppLegacy(root) }
        var seenPaths = Set<String>()
        var seenIDs = Set<String>()
        var out: [ImportedModel] = []
        for m in all where seenPaths.insert(m.path).inserted {
            var id = m.id
            var n = 2
            while !seenIDs.insert(id).inserted { id = "\(m.id)-\(n)"; n += 1 }
            out.append(ImportedModel(id: id, source: m.source, path: m.path, mmproj: m.mmproj, parameters: m.parameters,
                                     systemPrompt: m.systemPrompt, template: m.template))
        }
        return out
    }

    // MARK: Ollama

    /// `manifests/<host>/<namespace>/<model>/<tag>` (exactly four levels) → the `.model` layer's blob
    /// in `blobs/sha256-<hex>`, with `.projector`, `.params`, `.system` and `.template` layers. Named as
    /// Ollama names them: `llama3.2:latest`, `user/model:tag`, `hf.co/user/repo:tag`.
    static func ollama(_ root: String) -> [ImportedModel] {
        let manifests = root + "/manifests"
        var out: [ImportedModel] = []
        for host in sortedEntries(manifests) {
            for namespace in sortedEntries("\(manifests)/\(host)") {
                for model in sortedEntries("\(manifests)/\(host)/\(namespace)") {
                    for tag in sortedEntries("\(manifests)/\(host)/\(namespace)/\(model)") {
                        let file = "\(manifests)/\(host)/\(namespace)/\(model)/\(tag)"
                        guard let bytes = readFileBytes(file, maxBytes: 1 << 20), let doc = try? JSONParser.parse(bytes).0,
                              let layers = doc["layers"]?.arrayValue else { continue }
                        func blob(_ kind: String) -> String? {
                            guard let digest = layers.first(where: { $0["mediaType"]?.stringValue == "application/vnd.ollama.image.\(kind)" })?["digest"]?.stringValue,
                                  digest.hasPrefix("sha256:") else { return nil }
                            let path = "\(root)/blobs/sha256-\(digest.dropFirst(7))"
                            return isRegularFile(path) ? resolved(path) : nil
                        }
                        guard let weights = blob("model") else { continue }  // cloud stubs, safetensors: no GGUF
                        func text(_ kind: String) -> String? { blob(kind).flatMap { readFile($0, maxBytes: 1 << 20) } }
                        var params = JSONObject()
                        if let p = text("params"), let json = try? JSONParser.parse(p) { params = ollamaParameters(json) }
                        let name: String
                        if host == "registry.ollama.ai" {
                            name = namespace == "library" ? "\(model):\(tag)" : "\(namespace)/\(model):\(tag)"
                        } else {
                            name = "\(host)/\(namespace)/\(model):\(tag)"
                        }
                        out.append(ImportedModel(id: name, source: .ollama, path: weights, mmproj: blob("projector"), parameters: params,
                                                 systemPrompt: text("system"), template: text("template") ?? text("prompt")))
                    }
                }
            }
        }
        return out
    }

    /// Ollama's `params` (its Modelfile's PARAMETER lines) as llama-server options where one exists.
    static func ollamaParameters(_ params: JSONValue) -> JSONObject {
        // Each on its own: a layer's option llama-server has no flag for (stop) is left out, not fatal.
        var out = JSONObject()
        for (key, value) in params.objectValue?.entries ?? [] {
            guard case .success(let mapped) = OllamaOptions.modelParameters(JSONObject([(key, value)])) else { continue }
            for (k, v) in mapped.parameters.entries { out[k] = v }
        }
        return out
    }

    // MARK: LM Studio

    /// `<models>/<publisher>/<repo>/<file>.gguf`, exactly (LM Studio ignores files elsewhere); a
    /// projector in the same folder is attached; `.part` downloads are not models yet.
    static func lmstudio(_ root: String) -> [ImportedModel] {
        var out: [ImportedModel] = []
        for publisher in sortedEntries(root) {
            for repo in sortedEntries("\(root)/\(publisher)") {
                let dir = "\(root)/\(publisher)/\(repo)"
                let files = sortedEntries(dir).filter { $0.lowercased().hasSuffix(".gguf") }
                let projector = files.first { FileSelection.isProjector($0) }.map { resolved("\(dir)/\($0)") }
                for file in files where !FileSelection.isProjector(file) && firstShard(file) {
                    let path = "\(dir)/\(file)"
                    guard isRegularFile(path) else { continue }
                    out.append(ImportedModel(id: "\(publisher)/\(repo)/\(file)", source: .lmstudio, path: resolved(path), mmproj: projector,
                                             parameters: JSONObject(), systemPrompt: nil, template: nil))
                }
            }
        }
        return out
    }

    // MARK: Hugging Face (and llama.cpp's own cache, which uses its layout)

    /// `models--{org}--{repo}/snapshots/<commit>/…` for the commit `refs/main` names (else any
    /// snapshot), each file a relative symlink into `blobs/` — or, with the shared Xet store, a link
    /// that links again — followed to the real file. Named `hf.co/{org}/{repo}/{path}`, as a pull of
    /// that file is.
    static func huggingFace(_ root: String, source: ModelSource) -> [ImportedModel] {
        var out: [ImportedModel] = []
        for entry in sortedEntries(root) where entry.hasPrefix("models--") {
            guard let (org, name) = String(entry.dropFirst("models--".count)).splitOnce("--"), !org.isEmpty, !name.isEmpty else { continue }
            let repo = "\(org)/\(name)"
            let base = "\(root)/\(entry)"
            var snapshot: String?
            if let commit = readFile("\(base)/refs/main", maxBytes: 256)?.trimmingSpaces(), !commit.isEmpty, isDirectory("\(base)/snapshots/\(commit)") {
                snapshot = "\(base)/snapshots/\(commit)"
            } else if let any = sortedEntries("\(base)/snapshots").last {
                snapshot = "\(base)/snapshots/\(any)"
            }
            guard let snapshot else { continue }
            var files: [String] = []
            walkFiles(snapshot, relative: "", depth: 0, into: &files)
            let ggufs = files.filter { $0.lowercased().hasSuffix(".gguf") }
            for file in ggufs where !FileSelection.isProjector(file) && firstShard(file) {
                let dir = FileSelection.directory(file)
                let projector = ggufs.first { FileSelection.isProjector($0) && FileSelection.directory($0) == dir }.map { resolved("\(snapshot)/\($0)") }
                out.append(ImportedModel(id: "hf.co/\(repo)/\(file)", source: source, path: resolved("\(snapshot)/\(file)"), mmproj: projector,
                                         parameters: JSONObject(), systemPrompt: nil, template: nil))
            }
        }
        return out
    }

    /// llama.cpp's older flat cache: `<user>_<repo>_<file>.gguf` files directly in the folder.
    static func llamaCppLegacy(_ root: String) -> [ImportedModel] {
        sortedEntries(root).filter { $0.lowercased().hasSuffix(".gguf") && !FileSelection.isProjector($0) && firstShard($0) }.compactMap { file in
            let path = "\(root)/\(file)"
            guard isRegularFile(path) else { return nil }
            return ImportedModel(id: "llama.cpp/\(file.dropLast(5))", source: .llamaCpp, path: resolved(path), mmproj: nil,
                                 parameters: JSONObject(), systemPrompt: nil, template: nil)
        }
    }

    // MARK: Files

    static func firstShard(_ name: String) -> Bool {
        guard let split = ModelScanner.splitSuffix(FileSelection.stem(name)) else { return true }
        return split.index == 1
    }

    /// The entries of a folder, sorted, without dot files (nil folders are empty).
    static func sortedEntries(_ dir: String) -> [String] {
        (listDirectory(dir) ?? []).filter { !$0.hasPrefix(".") }.sorted()
    }

    /// The real path (symlinks followed, however many times); the path itself when that fails.
    static func resolved(_ path: String) -> String {
        guard let r = realpath(path, nil) else { return path }
        defer { free(r) }
        return String(cString: r)
    }

    static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    static func isRegularFile(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG
    }

    /// Files under `dir` (symlinks to files count), as paths relative to it, four levels at most.
    static func walkFiles(_ dir: String, relative: String, depth: Int, into files: inout [String]) {
        for name in sortedEntries(dir) {
            let path = "\(dir)/\(name)"
            let rel = relative.isEmpty ? name : "\(relative)/\(name)"
            if isDirectory(path) {
                if depth < 4 { walkFiles(path, relative: rel, depth: depth + 1, into: &files) }
            } else if isRegularFile(path) {
                files.append(rel)
            }
        }
    }
}
