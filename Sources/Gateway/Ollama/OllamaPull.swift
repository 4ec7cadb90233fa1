import Shared

/// Ollama's `POST /api/pull`, for Hugging Face names (`hf.co/user/repo[:quant]`, as Ollama pulls them):
/// exactly Ollama's NDJSON progress stream — `pulling manifest`, a `pulling <digest>` line per file
/// with `total`/`completed` as it downloads, `verifying sha256 digest`, `writing manifest`,
/// `success` — or with `stream: false` one final object. Errors after the stream started are a last
/// `{"error":…}` line (Ollama's way); before it, or without streaming, the status says what failed.
/// A client that disconnects from a pull it started cancels it (Ctrl+C on `ollama pull`); what was
/// downloaded is kept, and pulling again resumes it.
struct OllamaPull: Sendable {
    let pulls: PullTracker
    let bodies: JSONBodyReader

    func register(on router: inout Router) {
        router.post("/api/pull") { r, _ in try await pull(r) }
    }

    static func line(_ fields: [(String, JSONValue)]) -> [UInt8] {
        JSONWriter.bytes(.object(JSONObject(fields)), pretty: false) + [10]
    }

    func pull(_ request: HTTPRequest) async throws -> HTTPResponse {
        let doc = try await bodies.read(request).0
        guard let name = (doc["model"] ?? doc["name"])?.stringValue, !name.isEmpty else { throw APIError.badRequest("model is required") }
        if let insecure = doc["insecure"]?.boolValue, !insecure, name.lowercased().hasPrefix("http://") {
            throw APIError.badRequest("insecure protocol http")
        }
        let started = try await pulls.start(name)
        let ownsPull = started.phase == .resolving && started.files.isEmpty
        let stream = doc["stream"]?.boolValue ?? true
        let updates = pulls.updates(started.job)
        if !stream {
            var last = started
            for await status in updates { last = status }
            guard last.phase == .done else {
                throw APIError(PullTracker.httpStatus(last.failure), last.error ?? "the pull \(last.phase.rawValue)")
            }
            return OllamaAPI.json(.object(JSONObject([("status", .string("success"))])))
        }
        let pulls = self.pulls
        return HTTPResponse(status: .ok, headers: ["Content-Type": "application/x-ndjson"], body: .stream(contentLength: nil) { writer in
            var reported: [String: Int] = [:]
            var phases: Set<PullPhase> = []
            do {
                try await writer.write(Self.line([("status", .string("pulling manifest"))]))
                for await status in updates {
                    for file in status.files where !file.digest.isEmpty && file.digest != "sha256:" {
                        guard reported[file.digest] != file.completed else { continue }
                        reported[file.digest] = file.completed
                        let hex = file.digest.dropFirst("sha256:".count)
                        try await writer.write(Self.line([("status", .string("pulling \(hex.prefix(12))")), ("digest", .string(file.digest)),
                                                          ("total", .int(file.total)), ("completed", .int(file.completed))]))
                    }
                    if [.verifying, .registering, .done].contains(status.phase), phases.insert(.verifying).inserted {
                        try await writer.write(Self.line([("status", .string("verifying sha256 digest"))]))
                    }
                    if [.registering, .done].contains(status.phase), phases.insert(.registering).inserted {
                        try await writer.write(Self.line([("status", .string("writing manifest"))]))
                    }
                    switch status.phase {
                    case .done: return try await writer.write(Self.line([("status", .string("success"))]))
                    case .failed, .cancelled: return try await writer.write(Self.line([("error", .string(status.error ?? "the pull \(status.phase.rawValue)"))]))
                    default: continue
                    }
                }
            } catch {
                // The client is gone: a pull it started stops (the partial files stay, resumable).
                if ownsPull { _ = try? await pulls.cancel(started.job) }
                throw error
            }
        })
    }
}
