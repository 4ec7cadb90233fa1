import Glibc
import Shared

/// Keeps a runner's conversations across an unload. Before a llama-server runner stops, each slot
/// that holds KV is saved with llama-server's own `POST /slots/{id}?action=save` into
/// `<state>/slots/`; when the same model with the same load arguments and the same GGUF file loads
/// again, the files are restored before the first request is let through, so llama-server's slot
/// matching (longest common prefix) reuses them for the conversation's next turn.
///
/// Files are named `<model>@<key>.s<slot>.bin`, the key hashing the runner's fingerprint (its load
/// arguments) and the model file's size and modification time: a file whose model or parameters
/// changed never matches and is deleted. llama-server writes a save under a temporary name, renamed
/// only once the save answered, so a crash never leaves a half-written file under a real name; a file
/// that does not restore (corrupt, or from another build) is logged, counted and deleted. The folder is
/// bounded by `limits.slot_cache_bytes`, oldest files first. A failure never breaks a load or an unload.
struct SlotCache: Sendable {
    let directory: String
    let limitBytes: Int

    /// What one save or restore did.
    struct Outcome: Sendable, Equatable {
        var slots = 0
        var tokens = 0
        var failures: [String] = []
    }

    /// Architectures whose state is recurrent (or part recurrent): llama-server saves them, but the
    /// restored state is not reused by the next prompt.
    static let recurrent: Set<String> = ["mamba", "mamba2", "rwkv6", "rwkv6qwen2", "rwkv7", "arwkv7", "jamba", "falcon-h1",
                                         "granitehybrid", "nemotron_h", "lfm2", "qwen3next", "plamo2"]
    /// Architectures with sliding-window attention: only the window is saved, so nothing is reused.
    static let slidingWindow: Set<String> = ["gemma2", "gemma3", "gemma3n", "cohere2", "gpt-oss", "exaone4"]

    /// Why a model's slots are not kept, or nil when they can be.
    static func unsupported(_ model: ResolvedModel) -> String? {
        if model.runtimeKind != .llamaServer { return "not a llama-server runner" }
        if model.mmproj != nil { return "a multimodal model (llama-server refuses to save slots that hold images)" }
        if model.kind == .embedding { return "an embedding model (no conversation to keep)" }
        guard let arch = model.metadata?.architecture else { return nil }
        if recurrent.contains(arch) { return "\(arch) keeps a recurrent state, which restores without reuse" }
        if slidingWindow.contains(arch) { return "\(arch) uses sliding-window attention, which saves only the window" }
        return nil
    }

    /// Runner flags for a model whose slots are kept: the save folder, and idle slots that keep their
    /// KV (by default llama-server moves idle slots to its in-memory prompt cache and, with a unified
    /// KV cache, clears them, so a save would find them empty). A user's own setting wins.
    func arguments(_ model: ResolvedModel) -> [String] {
        var argv = ["--slot-save-path", directory]
        let params = model.parameters.objectValue
        if params?["cache_idle_slots"] == nil && params?["no_cache_idle_slots"] == nil { argv.append("--no-cache-idle-slots") }
        return argv
    }

    /// The key of a runner's files: its load arguments and the model file's identity.
    static func key(_ model: ResolvedModel, fingerprint: String) -> String {
        let stamp = FileStamp.of(model.path)
        return FNV1a.hex(FNV1a.hash("\(fingerprint)\u{0}\(stamp?.size ?? 0)\u{0}\(stamp?.modifiedNanos ?? 0)".utf8))
    }

    static func prefix(_ model: String) -> String { RunnerProcess.safeName(model) + "@" }

    static func fileName(_ model: String, key: String, slot: Int) -> String { prefix(model) + key + ".s\(slot).bin" }

    /// The slot of a file of `model` with `key`, or nil for another key (or not a slot file).
    static func slot(of name: String, model: String, key: String) -> Int? {
        let head = prefix(model) + key + ".s"
        guard name.hasPrefix(head), name.hasSuffix(".bin") else { return nil }
        return Int(name.dropFirst(head.count).dropLast(4))
    }

    // MARK: Saving and restoring

    /// Saves every slot of a ready runner that holds tokens, replacing the model's earlier files.
    func save(_ model: String, key: String, runner: HTTPClient) async -> Outcome {
        var outcome = Outcome()
        let dir = directory
        await BlockingPool.shared.run {
            try? makeDirectories(dir, mode: 0o700)
            Self.remove(in: dir) { $0.hasPrefix(Self.prefix(model)) }
        }
        let ids: [Int]
        do {
            let slots = try await call(runner, "GET", "/slots", body: nil)
            ids = (slots.arrayValue ?? []).compactMap { $0["id"]?.intValue }
        } catch {
            outcome.failures.append("listing slots: \(error)")
            return outcome
        }
        for id in ids {
            let name = Self.fileName(model, key: key, slot: id)
            let partial = name + ".partial"
            do {
                let answer = try await call(runner, "POST", "/slots/\(id)?action=save", body: .object(JSONObject([("filename", .string(partial))])))
                let tokens = answer["n_saved"]?.intValue ?? 0
                let kept = await BlockingPool.shared.run { () -> Bool in
                    if tokens > 0 { return rename("\(dir)/\(partial)", "\(dir)/\(name)") == 0 }
                    unlink("\(dir)/\(partial)")
                    return false
                }
                if kept {
                    outcome.slots += 1
                    outcome.tokens += tokens
                }
            } catch {
                await BlockingPool.shared.run { _ = unlink("\(dir)/\(partial)") }
                outcome.failures.append("slot \(id): \(error)")
            }
        }
        await prune()
        return outcome
    }

    /// Restores the files of `model` with `key` into a freshly loaded runner, and deletes the model's
    /// files with any other key (its parameters or file changed). A file that does not restore is deleted.
    func restore(_ model: String, key: String, runner: HTTPClient) async -> Outcome {
        var outcome = Outcome()
        let dir = directory
        let files = await BlockingPool.shared.run { () -> [(String, Int)] in
            Self.remove(in: dir) { $0.hasPrefix(Self.prefix(model)) && Self.slot(of: $0, model: model, key: key) == nil }
            return (listDirectory(dir) ?? []).compactMap { name in Self.slot(of: name, model: model, key: key).map { (name, $0) } }
                .sorted { $0.1 < $1.1 }
        }
        for (name, id) in files {
            do {
                let answer = try await call(runner, "POST", "/slots/\(id)?action=restore", body: .object(JSONObject([("filename", .string(name))])))
                outcome.slots += 1
                outcome.tokens += answer["n_restored"]?.intValue ?? 0
            } catch {
                outcome.failures.append("\(name): \(error)")
                await BlockingPool.shared.run { _ = unlink("\(dir)/\(name)") }
            }
        }
        return outcome
    }

    /// Deletes the oldest slot files until the folder is within `limitBytes`.
    func prune() async {
        let (dir, limit) = (directory, limitBytes)
        await BlockingPool.shared.run {
            var files = (listDirectory(dir) ?? []).filter { $0.hasSuffix(".bin") }.compactMap { name in
                FileStamp.of("\(dir)/\(name)").map { (name: name, stamp: $0) }
            }.sorted { $0.stamp.modifiedNanos < $1.stamp.modifiedNanos }
            var total = files.reduce(0) { $0 + $1.stamp.size }
            while total > limit, !files.isEmpty {
                let oldest = files.removeFirst()
                unlink("\(dir)/\(oldest.name)")
                total -= oldest.stamp.size
            }
        }
    }

    // MARK: Helpers

    static func remove(in dir: String, where matches: (String) -> Bool) {
        for name in listDirectory(dir) ?? [] where matches(name) { unlink("\(dir)/\(name)") }
    }

    /// One call to the runner's slot API: the answer as JSON, or an error with llama-server's message.
    func call(_ runner: HTTPClient, _ method: String, _ target: String, body: JSONValue?) async throws -> JSONValue {
        let request = HTTPClientRequest(method: method, target: target, headers: ["Content-Type": "application/json"],
                                        body: body.map { .bytes(Array(JSONWriter.write($0, pretty: false).utf8)) } ?? .none)
        let response = try await runner.send(request, timeout: 60)
        let bytes = try await response.collect(upTo: 16 << 20)
        let json = try? JSONParser.parse(bytes).0
        guard response.status.code == 200, let json else {
            let message = json?["error"]?["message"]?.stringValue ?? String(decoding: bytes.prefix(200), as: UTF8.self)
            throw SlotCacheError(status: response.status.code, message: message)
        }
        return json
    }
}

/// A slot API call llama-server refused.
struct SlotCacheError: Error, CustomStringConvertible {
    let status: Int
    let message: String
    var description: String { "HTTP \(status): \(message)" }
}
