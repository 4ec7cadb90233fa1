import Glibc
import Shared

/// Ollama's model management: `POST /api/create` (from an existing model with new `parameters`,
/// `system` and `template`, or from GGUF blobs uploaded with `POST /api/blobs/sha256:…`), `POST
/// /api/copy`, `DELETE /api/delete` (which deletes a file only if Llama Runner downloaded or stored it,
/// never one of the user's own or of another tool's cache), and `HEAD`/`POST /api/blobs/:digest`.
/// The registry makes every change (validated, backed up); the gateway reads its model table again
/// before answering, so the next request sees it. Status codes and error shapes are Ollama's.
struct OllamaModels: Sendable {
    let catalog: ModelCatalog
    let registry: RPCClient
    let bodies: JSONBodyReader
    /// `<first models folder>/.blobs`, where uploaded blobs are stored.
    let blobFolder: String?
    let loop: EventLoop

    /// Uploads are as large as a model: the body limit of the blob route.
    static let blobBodyLimit = Int.max / 2

    static func isBlobUpload(_ head: HTTPRequestHead) -> Bool { head.method == "POST" && head.path.hasPrefix("/api/blobs/") }

    func register(on router: inout Router) {
        router.post("/api/create") { r, _ in try await create(r) }
        router.post("/api/copy") { r, _ in try await copy(r) }
        router.delete("/api/delete") { r, _ in try await delete(r) }
        router.on("HEAD", "/api/blobs/{digest}") { _, p in try headBlob(p["digest"] ?? "") }
        router.post("/api/blobs/{digest}") { r, p in try await uploadBlob(r, p["digest"] ?? "") }
    }

    func call<M: RPCMethod>(_ method: M.Type, _ params: M.Params) async throws(APIError) -> M.Result {
        do {
            let result = try await registry.call(method, params, timeout: 60)
            await catalog.refresh()
            return result
        } catch {
            guard case RPCError.remote(let fault) = error else { throw APIError(.serviceUnavailable, "model-registry is unavailable: \(error)") }
            switch fault.code {
            case RPCFault.notFoundCode: throw APIError(.notFound, fault.message)
            case RPCFault.validationCode, RPCFault.invalidParamsCode: throw APIError(.badRequest, fault.message)
            case RPCFault.refusedCode: throw APIError(.forbidden, fault.message)
            default: throw APIError(.internalServerError, fault.message)
            }
        }
    }

    static func line(_ status: String) -> [UInt8] { OllamaPull.line([("status", .string(status))]) }

    // MARK: create, copy, delete

    func create(_ request: HTTPRequest) async throws -> HTTPResponse {
        let doc = try await bodies.read(request).0
        guard let name = (doc["model"] ?? doc["name"])?.stringValue, !name.isEmpty else { throw APIError.badRequest("model is required") }
        guard !name.contains(where: { $0.isWhitespace || $0 == "\"" }) else { throw APIError.badRequest("invalid model name") }
        if doc["quantize"]?.stringValue != nil {
            throw APIError.badRequest("quantize is not supported: pull the quantization you want (hf.co/user/repo:Q4_K_M), or make it with llama.cpp's llama-quantize")
        }
        if let adapters = doc["adapters"]?.objectValue, !adapters.isEmpty { throw APIError.badRequest("adapters (LoRA) are not supported yet") }
        var files: [String: String]?
        if let f = doc["files"] {
            guard let object = f.objectValue, object.entries.allSatisfy({ $0.value.stringValue != nil }) else {
                throw APIError.badRequest("files must map file names to digests (sha256:<hex>)")
            }
            files = Dictionary(object.entries.map { ($0.key, $0.value.stringValue!) }, uniquingKeysWith: { a, _ in a })
            for digest in files!.values where !Self.isDigest(digest) { throw APIError.badRequest("invalid digest format: \(digest)") }
        }
        let from = doc["from"]?.stringValue
        if from == nil && (files?.isEmpty ?? true) { throw APIError.badRequest("neither 'from' or 'files' was specified") }
        if let messages = doc["messages"]?.arrayValue, !messages.isEmpty { throw APIError.badRequest("messages (a conversation saved in the model) are not supported") }
        // Ollama's parameter names become llama-server options (num_ctx → ctx_size, temperature → temp).
        var parameters: JSONValue?
        var ignored: [String] = []
        if let p = doc["parameters"], !p.isNull {
            guard let object = p.objectValue else { throw APIError.badRequest("parameters must be an object") }
            switch OllamaOptions.modelParameters(object) {
            case .success(let mapped): (parameters, ignored) = (.object(mapped.parameters), mapped.ignored)
            case .failure(let bad): throw APIError.badRequest(bad.message)
            }
        }
        _ = try await call(RegistryRPC.CreateModel.self, CreateModelRequest(id: name, from: from, files: files, parameters: parameters,
                                                                           system: doc["system"]?.stringValue, template: doc["template"]?.stringValue))
        var statuses: [String] = []
        if let files {
            statuses.append("parsing GGUF")
            statuses += files.values.sorted().map { "using existing layer \($0)" }
        } else if let source = catalog.resolve(name) {
            statuses.append("using existing layer sha256:\(OllamaAPI.digest(source))")
        }
        statuses += ignored.map { "ignoring parameter \($0): llama-server has no model setting for it" }
        statuses += ["writing manifest", "success"]
        guard doc["stream"]?.boolValue ?? true else { return OllamaAPI.json(.object(JSONObject([("status", .string("success"))]))) }
        return HTTPResponse(status: .ok, headers: ["Content-Type": "application/x-ndjson"],
                            body: .bytes(statuses.flatMap { Self.line($0) }))
    }

    func copy(_ request: HTTPRequest) async throws -> HTTPResponse {
        let doc = try await bodies.read(request).0
        guard let source = doc["source"]?.stringValue, !source.isEmpty, let destination = doc["destination"]?.stringValue, !destination.isEmpty else {
            throw APIError.badRequest("source and destination are required")
        }
        guard !destination.contains(where: { $0.isWhitespace || $0 == "\"" }) else { throw APIError.badRequest("invalid model name") }
        _ = try await call(RegistryRPC.CopyModel.self, CopyModelRequest(source: source, destination: destination))
        return HTTPResponse(status: .ok)
    }

    func delete(_ request: HTTPRequest) async throws -> HTTPResponse {
        let doc = try await bodies.read(request).0
        guard let name = (doc["model"] ?? doc["name"])?.stringValue, !name.isEmpty else { throw APIError.badRequest("model is required") }
        _ = try await call(RegistryRPC.DeleteModel.self, ModelRef(model: name))
        return HTTPResponse(status: .ok)
    }

    // MARK: blobs

    static func isDigest(_ d: String) -> Bool { d.hasPrefix("sha256:") && d.count == 71 && d.dropFirst(7).allSatisfy(\.isHexDigit) }

    func blobPath(_ digest: String) throws(APIError) -> String {
        guard Self.isDigest(digest) else { throw APIError.badRequest("invalid digest format: \(digest) (expected sha256:<64 hex digits>)") }
        guard let folder = blobFolder else { throw APIError(.internalServerError, "paths.models_dirs is empty: there is nowhere to store blobs") }
        return "\(folder)/sha256-\(digest.dropFirst(7).lowercased())"
    }

    func headBlob(_ digest: String) throws -> HTTPResponse {
        let path = try blobPath(digest)
        return HTTPResponse(status: FileStamp.of(path) == nil ? .notFound : .ok)
    }

    /// Stores the body as the blob, hashed as it is written (to a temporary file in the blob folder,
    /// renamed only when the digest matches; a mismatch deletes it). 201 when stored, 200 when it was.
    func uploadBlob(_ request: HTTPRequest, _ digest: String) async throws -> HTTPResponse {
        let path = try blobPath(digest)
        if FileStamp.of(path) != nil { return HTTPResponse(status: .ok) }
        let folder = String(path[..<path.lastIndex(of: "/")!])
        let temp = "\(folder)/.upload-\(getpid())-\(monotonicNanos())"
        let length = Int(request.headers["content-length"] ?? "")
        let space = await BlockingPool.shared.run { () -> Result<Void, APIError> in
            do { try makeDirectories(folder) } catch { return .failure(APIError(.internalServerError, "cannot create \(folder): \(error)")) }
            var vfs = statvfs()
            if let length, statvfs(folder, &vfs) == 0, Int(vfs.f_bavail) * Int(vfs.f_frsize) < length {
                return .failure(APIError(HTTPStatus(507), "not enough free space in \(folder) for a blob of \(ModelMemory.gigabytes(length))"))
            }
            return .success(())
        }
        try space.get()
        let file: StagedFile
        do { file = try await StagedFile.create(temp) } catch { throw APIError(.internalServerError, "cannot store the blob: \(error)") }
        var stored = false
        defer { if !stored { Task { await file.discard() } } }
        var written = 0
        while let piece = try await request.body.read() {
            do { try await file.write(piece, at: written) } catch {
                throw APIError(error.errno == ENOSPC ? HTTPStatus(507) : .internalServerError, "writing the blob failed: \(error)")
            }
            written += piece.count
        }
        let got: String
        do { got = "sha256:" + SHA256.hex(try await file.digest()) } catch { throw APIError(.internalServerError, "writing the blob failed: \(error)") }
        guard got == digest.lowercased() else { throw APIError.badRequest("digest mismatch, expected \(digest), got \(got)") }
        do { try await file.commit(to: path) } catch { throw APIError(.internalServerError, "cannot store the blob at \(path): \(error)") }
        stored = true
        return HTTPResponse(status: HTTPStatus(201))
    }
}

