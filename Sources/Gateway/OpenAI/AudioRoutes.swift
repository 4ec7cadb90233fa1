import Glibc
import Shared

/// OpenAI's speech-to-text routes, `/v1/audio/transcriptions` and `/v1/audio/translations`, relayed to
/// the model's whisper-server runner (started with `--inference-path /v1/audio/transcriptions`).
///
/// The upload is a multipart form. The gateway reads it only until the `model` field has gone by,
/// keeping what it read in a spool (memory up to 1 MiB, then an unlinked file in the run directory, so
/// a client that sends the file before the model costs disk, not memory); then it acquires the runner
/// and streams the spool followed by the rest of the upload. Translation is whisper's `translate`
/// switch, added as a form field. Response formats pass through; whisper-server's `text/html` for
/// `text` is corrected to `text/plain`, and its plain-text errors become OpenAI error objects.
struct AudioRoutes: Sendable {
    let catalog: ModelCatalog
    let relay: RunnerRelay
    let limit: Int
    let spoolDirectory: String

    static let upstreamPath = "/v1/audio/transcriptions"

    func register(on router: inout Router) {
        router.post("/v1/audio/transcriptions") { request, _ in try await transcribe(request, translate: false) }
        router.post("/v1/audio/translations") { request, _ in try await transcribe(request, translate: true) }
    }

    func transcribe(_ request: HTTPRequest, translate: Bool) async throws -> HTTPResponse {
        let shape = ErrorShape.openAI
        let route = translate ? "/v1/audio/translations" : "/v1/audio/transcriptions"
        guard let boundary = MultipartScanner.boundary(in: request.head.headers["content-type"]) else {
            return shape.response(.badRequest, "expected a multipart/form-data body with a boundary: the audio goes in a `file` field, the model in `model`",
                                  param: "file")
        }
        if let declared = request.head.headers["content-length"].flatMap({ Int($0) }), declared > limit {
            return shape.response(.payloadTooLarge, "the upload is \(declared) bytes; the limit is \(limit) (limits.request_body_bytes)",
                                  headers: ["Connection": "close"])
        }
        let upload = AudioUpload(body: request.body, boundary: boundary, limit: limit, spoolDirectory: spoolDirectory)
        // Read until the model field is known (or the form ends).
        do {
            while upload.scanner.field("model") == nil, try await upload.readMore() {}
        } catch let error as HTTPError {
            return shape.response(error.status, error.message, headers: error.closesConnection ? ["Connection": "close"] : HTTPHeaders())
        } catch {
            return shape.response(.badRequest, "cannot read the upload: \(error)")
        }
        if let problem = upload.scanner.error { return shape.response(.badRequest, problem) }
        if upload.scanner.finished && !upload.scanner.files.contains(where: { $0.name == "file" }) {
            return shape.response(.badRequest, "the form has no `file` field with the audio", param: "file")
        }
        let model: ResolvedModel
        if let name = upload.scanner.field("model"), !name.isEmpty {
            guard let found = catalog.resolve(name) else {
                let available = catalog.availableNames
                return shape.response(.notFound, "The model `\(name)` does not exist. Available models: \(available.joined(separator: ", "))",
                                      param: "model", code: "model_not_found")
            }
            model = found
        } else if let first = catalog.current.models.first(where: { $0.kind == .audio && !$0.unlisted }) {
            model = first  // OpenAI requires `model`; with none given, the first audio model serves.
        } else {
            return shape.response(.badRequest, "model is required, and no audio (whisper) model is configured", param: "model")
        }
        if translate { upload.prefix(field: "translate", value: "true") }
        // With the client's Content-Length, whisper-server gets one too (it reads chunked uploads slower).
        let declared = request.head.headers["content-length"].flatMap { Int($0) }
        let body: HTTPClientRequest.Body = if let declared { .streamOfLength(declared + upload.prefixBytes) { try await upload.next() } }
                                           else { .stream { try await upload.next() } }
        let call = try await relay.call(RequestOrigin(request), model: model, path: Self.upstreamPath, upload: body,
                                        contentType: "multipart/form-data; boundary=\(boundary)", accept: "*/*")
        let audioSeconds = upload.scanner.files.first { $0.name == "file" }.flatMap { WAVHeader.duration(head: $0.head) }
        let status = call.upstream.status
        guard status.code < 400 else {
            // whisper-server answers errors in plain text ("Invalid request") or {"error": "..."}.
            let body = (try? await call.upstream.collect(upTo: 64 << 10)) ?? []
            call.lease.release()
            relay.record(call, api: "openai", route: route, status: status.code, firstByteAt: nil, usage: Usage(), clientGone: false,
                         audioSeconds: audioSeconds)
            if upload.scanner.finished && !upload.scanner.files.contains(where: { $0.name == "file" }) {
                return shape.response(.badRequest, "the form has no `file` field with the audio", param: "file")
            }
            var message = String(decoding: body, as: UTF8.self).trimmingCharacters(in: " \r\n")
            if let doc = try? JSONParser.parse(body).0, let e = doc["error"] { message = e.stringValue ?? e["message"]?.stringValue ?? message }
            return shape.response(status, "whisper-server (\(model.id)): \(message.isEmpty ? status.reason : message)")
        }
        let type = call.upstream.headers["content-type"] ?? "application/json"
        // whisper-server labels response_format=text as HTML.
        let contentType = type.hasPrefix("text/html") ? "text/plain; charset=utf-8" : type
        return relay.passthrough(call, api: "openai", route: route, shape: shape, contentType: contentType, audioSeconds: audioSeconds)
    }
}

/// One upload on its way to whisper-server: the multipart scanner watching it, the bytes read before
/// the runner was known (spooled), and the request body still to read. Used by one request's task only.
final class AudioUpload: @unchecked Sendable {
    static let memorySpool = 1 << 20

    let body: HTTPRequestBody
    let boundary: String
    var scanner: MultipartScanner
    let limit: Int
    let spoolDirectory: String
    private(set) var received = 0
    private var memory: [[UInt8]] = []
    private var memoryBytes = 0
    private var file: Int32 = -1
    private var fileWritten = 0
    private var fileRead = 0
    private var ended = false

    init(body: HTTPRequestBody, boundary: String, limit: Int, spoolDirectory: String) {
        self.body = body
        self.boundary = boundary
        scanner = MultipartScanner(boundary: boundary)
        self.limit = limit
        self.spoolDirectory = spoolDirectory
    }

    deinit { if file >= 0 { close(file) } }

    /// Reads one more piece of the upload, scans it and counts it; false once the body has ended.
    /// Over the limit: a 413 `HTTPError`.
    private func read() async throws -> [UInt8]? {
        guard !ended, let piece = try await body.read() else {
            if !ended { scanner.finish() }
            ended = true
            return nil
        }
        received += piece.count
        if received > limit {
            throw HTTPError(.payloadTooLarge, "the upload is larger than \(limit) bytes (limits.request_body_bytes)", closesConnection: true)
        }
        scanner.feed(piece)
        return piece
    }

    /// Reads and spools one piece; false once the body has ended or the form is malformed.
    func readMore() async throws -> Bool {
        guard let piece = try await read() else { return false }
        try await spool(piece)
        return scanner.error == nil
    }

    /// Bytes added before the client's own (see `prefix`).
    private(set) var prefixBytes = 0

    /// A form field to send before everything the client sent.
    func prefix(field: String, value: String) {
        let part = Array("--\(boundary)\r\nContent-Disposition: form-data; name=\"\(field)\"\r\n\r\n\(value)\r\n".utf8)
        memory.insert(part, at: 0)
        memoryBytes += part.count
        prefixBytes += part.count
    }

    /// Keeps a piece until the runner is known: in memory up to `memorySpool`, then in an unlinked
    /// temporary file, written on the blocking pool (the loop only waits for the write).
    private func spool(_ piece: [UInt8]) async throws {
        if file < 0 && memoryBytes + piece.count <= Self.memorySpool {
            memory.append(piece)
            memoryBytes += piece.count
            return
        }
        if file < 0 {
            var template = Array("\(spoolDirectory)/upload-XXXXXX".utf8CString)
            file = mkstemp(&template)
            guard file >= 0 else { throw HTTPError(.internalServerError, "cannot spool the upload in \(spoolDirectory): \(SystemError("mkstemp"))") }
            unlink(template)  // nothing is left behind, whatever happens to this process
        }
        unwritten.append(piece)
        unwrittenBytes += piece.count
        if unwrittenBytes >= Self.writeBatch { try await flush() }
    }

    /// Bytes gathered for one job writing the spool file: one blocking-pool job per MiB, not one per
    /// piece as it arrived (a job per 64 KiB piece made a 100 MB spool three times slower). The pieces
    /// are kept as they came, never joined, so no buffer grows and lingers in the heap.
    static let writeBatch = 1 << 20
    private var unwritten: [[UInt8]] = []
    private var unwrittenBytes = 0

    /// Writes what was gathered to the spool file, on the blocking pool.
    private func flush() async throws {
        guard unwrittenBytes > 0 else { return }
        let pieces = unwritten
        let (fd, at, count) = (file, fileWritten, unwrittenBytes)
        unwritten = []
        unwrittenBytes = 0
        let failure = await BlockingPool.shared.queue(for: spoolDirectory).run { () -> SystemError? in
            var offset = at
            for piece in pieces {
                let failed = piece.withUnsafeBytes { raw -> SystemError? in
                    var done = 0
                    while done < raw.count {
                        let n = pwrite(fd, raw.baseAddress! + done, raw.count - done, off_t(offset + done))
                        if n < 0 {
                            if errno == EINTR { continue }
                            return SystemError("write")
                        }
                        done += n
                    }
                    return nil
                }
                if let failed { return failed }
                offset += piece.count
            }
            return nil
        }
        if let failure { throw HTTPError(507, "cannot spool the upload in \(spoolDirectory): \(failure)") }
        fileWritten += count
    }

    /// The next piece for whisper-server: the spool first, then the rest of the upload as it arrives.
    func next() async throws -> [UInt8]? {
        if !memory.isEmpty {
            // One write for the whole memory spool, not one per piece as it arrived.
            let piece = memory.count == 1 ? memory[0] : memory.flatMap { $0 }
            memory.removeAll()
            memoryBytes = 0
            return piece
        }
        try await flush()
        if fileRead < fileWritten {
            let (fd, at, count) = (file, fileRead, min(256 << 10, fileWritten - fileRead))
            let (buffer, n) = await BlockingPool.shared.queue(for: spoolDirectory).run { () -> ([UInt8], Int) in
                var buffer = [UInt8](repeating: 0, count: count)
                let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress!, $0.count, off_t(at)) }
                return (buffer, n)
            }
            guard n > 0 else { throw HTTPError(.internalServerError, "cannot read back the spooled upload: \(SystemError("read"))") }
            fileRead += n
            if fileRead == fileWritten {
                close(file)
                file = -1
            }
            return n == buffer.count ? buffer : Array(buffer[..<n])
        }
        guard let piece = try await read() else {
            if let problem = scanner.error { throw HTTPError(.badRequest, problem) }
            return nil
        }
        return piece
    }
}
