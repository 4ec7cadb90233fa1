import Glibc
import Shared

/// Why the hub did not give what was asked, classified so each surface answers in its own terms.
struct HubError: Error, Sendable, Equatable, CustomStringConvertible {
    let failure: PullFailure
    let message: String
    /// For `rateLimited`: seconds until the window resets, when the hub said.
    var retryAfter: Int? = nil
    var description: String { message }
}

/// A repository at one commit, and its files.
struct HubRepository: Sendable {
    let repo: String
    let commit: String
    let files: [HubFile]
}

/// Where a file's bytes are: the URL to GET (the CDN's signed URL the hub redirected to, or the hub
/// itself), and what the hub says they are.
struct HubTarget: Sendable {
    let url: HTTPURL
    let size: Int
    let sha256: String?
    let acceptsRanges: Bool
}

/// The Hugging Face Hub's HTTP API, spoken directly (no client library): the repository's commit
/// and file listing (`/api/models/{repo}/revision/{rev}`, then the paged `/tree/{commit}`), and each
/// file's `resolve` URL, whose 302 names the CDN and carries the file's size and SHA-256
/// (`X-Linked-Size`, `X-Linked-Etag`). The endpoint is `HF_ENDPOINT` (or `hub.endpoint`), so a mirror
/// is one setting away; `HF_TOKEN` goes to hub hosts only — never to the CDN a redirect points at.
struct HubClient: Sendable {
    let endpoint: HTTPURL
    let token: String?
    let web: WebClient
    /// Seconds to wait for a response head.
    var timeout: Double = 60

    /// The endpoint and token from the environment and the config, as the Hugging Face tools read them:
    /// `HF_ENDPOINT`, else `hub.endpoint`, else the public hub; `HF_TOKEN`, `HUGGING_FACE_HUB_TOKEN`,
    /// then the token file (`HF_TOKEN_PATH`, `$HF_HOME/token`, `~/.cache/huggingface/token`).
    static func configured(endpoint configured: String?, web: WebClient) -> Result<HubClient, HubError> {
        let env = { (name: String) -> String? in getenv(name).map { String(cString: $0) }.flatMap { $0.isEmpty ? nil : $0 } }
        let text = env("HF_ENDPOINT") ?? configured ?? "https://huggingface.co"
        guard let url = HTTPURL(text) else {
            return .failure(HubError(failure: .other, message: "the hub endpoint \"\(text)\" (HF_ENDPOINT or hub.endpoint) is not an http(s) URL"))
        }
        var token = env("HF_TOKEN") ?? env("HUGGING_FACE_HUB_TOKEN")
        if token == nil {
            let home = env("HOME") ?? "/"
            let hfHome = env("HF_HOME") ?? home + "/.cache/huggingface"
            let file = env("HF_TOKEN_PATH") ?? hfHome + "/token"
            token = readFile(file, maxBytes: 4096)?.trimmingSpaces().description.nonEmpty
        }
        return .success(HubClient(endpoint: url, token: token, web: web))
    }

    /// Headers for a request to `url`: the token only when it is the hub's own host.
    func headers(for url: HTTPURL, extra: HTTPHeaders = HTTPHeaders()) -> HTTPHeaders {
        var h = extra
        h.set("User-Agent", "llama-runner/\(LlamaRunnerVersion.current)")
        h.set("Accept-Encoding", "identity")
        if let token, url.host == endpoint.host, url.port == endpoint.port { h.set("Authorization", "Bearer \(token)") }
        return h
    }

    func url(_ path: String) -> HTTPURL? { endpoint.appending(path) }

    // MARK: Listing

    func repository(_ repo: String, revision: String = "main") async throws(HubError) -> HubRepository {
        guard let infoURL = url("/api/models/\(repo)/revision/\(HTTPURL.encodePath(revision, keepSlashes: false))") else {
            throw HubError(failure: .invalidName, message: "\(repo) cannot be part of a URL")
        }
        let info = try await json(infoURL, what: repo)
        guard let commit = info["sha"]?.stringValue, !commit.isEmpty else {
            throw HubError(failure: .unreachable, message: "\(endpoint.origin) answered \(repo)'s model info without a commit (sha): is it a Hugging Face Hub (or a compatible mirror)?")
        }
        var files: [HubFile] = []
        var next = url("/api/models/\(repo)/tree/\(commit)?recursive=true")
        var pages = 0
        while let page = next, pages < 1000 {
            pages += 1
            let (doc, link) = try await jsonWithLink(page, what: repo)
            for entry in doc.arrayValue ?? [] where entry["type"]?.stringValue == "file" {
                guard let path = entry["path"]?.stringValue else { continue }
                let lfs = entry["lfs"]
                files.append(HubFile(path: path, size: lfs?["size"]?.intValue ?? entry["size"]?.intValue ?? 0,
                                     sha256: lfs?["oid"]?.stringValue ?? lfs?["sha256"]?.stringValue))
            }
            next = link.flatMap { page.resolving($0) }
        }
        return HubRepository(repo: repo, commit: commit, files: files)
    }

    /// GET `url` as JSON (64 MiB at most), with the hub's errors classified.
    func json(_ url: HTTPURL, what: String) async throws(HubError) -> JSONValue { try await jsonWithLink(url, what: what).0 }

    private func jsonWithLink(_ url: HTTPURL, what: String) async throws(HubError) -> (JSONValue, String?) {
        let response = try await send("GET", url, what: what)
        let body: [UInt8]
        do {
            body = try await response.collect(upTo: 64 << 20)
        } catch {
            throw HubError(failure: .unreachable, message: "reading \(url) failed: \(error)")
        }
        try check(response, body: body, url: url, what: what)
        guard let doc = try? JSONParser.parse(body).0 else {
            throw HubError(failure: .unreachable, message: "\(url.origin) answered \(url.path) with something that is not JSON")
        }
        return (doc, Self.nextLink(response.headers.values("link")))
    }

    /// The `rel="next"` target of `Link` headers (RFC 8288).
    static func nextLink(_ values: [String]) -> String? {
        for value in values {
            for part in value.split(separator: ",") {
                let fields = part.split(separator: ";").map { $0.trimmingSpaces() }
                guard let first = fields.first, first.hasPrefix("<"), first.hasSuffix(">"),
                      fields.dropFirst().contains(where: { f in
                          let compact = String(f.filter { $0 != " " }).lowercased()
                          return compact == "rel=\"next\"" || compact == "rel=next"
                      }) else { continue }
                return String(first.dropFirst().dropLast())
            }
        }
        return nil
    }

    // MARK: Files

    /// Where `path` of `repo` at `commit` is: `HEAD /resolve/…`, following redirects on the hub's own
    /// host (a renamed repository) and stopping at the first one that leaves it (the CDN: its answer
    /// would not carry the hub's headers, and it must not get the token).
    func target(repo: String, commit: String, path: String) async throws(HubError) -> HubTarget {
        guard var current = url("/\(repo)/resolve/\(commit)/\(HTTPURL.encodePath(path))") else {
            throw HubError(failure: .invalidName, message: "\(path) cannot be part of a URL")
        }
        for _ in 0..<5 {
            let response = try await send("HEAD", current, what: "\(repo)/\(path)")
            _ = try? await response.collect(upTo: 1 << 20)
            let status = response.status.code
            let h = response.headers
            if (300..<400).contains(status) {
                guard let location = h["location"], let next = current.resolving(location) else {
                    throw HubError(failure: .unreachable, message: "\(current) redirected without a usable Location")
                }
                if next.host == endpoint.host && next.port == endpoint.port {
                    current = next
                    continue
                }
                let size = Int(h["x-linked-size"] ?? "") ?? 0
                return HubTarget(url: next, size: size, sha256: Self.etag(h["x-linked-etag"]), acceptsRanges: true)
            }
            try check(response, body: [], url: current, what: "\(repo)/\(path)")
            let size = Int(h["x-linked-size"] ?? h["content-length"] ?? "") ?? 0
            return HubTarget(url: current, size: size, sha256: Self.etag(h["x-linked-etag"]), acceptsRanges: h["accept-ranges"]?.lowercased() != "none")
        }
        throw HubError(failure: .unreachable, message: "\(repo)/\(path): too many redirects on \(endpoint.host)")
    }

    /// An ETag as a SHA-256 (quotes and `W/` stripped), when it is one.
    static func etag(_ value: String?) -> String? {
        guard var v = value?.trimmingSpaces().description else { return nil }
        if v.hasPrefix("W/") { v = String(v.dropFirst(2)) }
        v = v.trimmingCharacters(in: "\"")
        return v.count == 64 && v.allSatisfy(\.isHexDigit) ? v.lowercased() : nil
    }

    /// GET the bytes from `offset` on (a `Range` request when `offset` > 0).
    func get(_ target: HubTarget, from offset: Int) async throws(HubError) -> HTTPClientResponse {
        var extra = HTTPHeaders()
        if offset > 0 { extra.set("Range", "bytes=\(offset)-") }
        var current = target.url
        for _ in 0..<5 {
            let response = try await send("GET", current, what: current.path, extra: extra)
            let status = response.status.code
            if (300..<400).contains(status), let location = response.headers["location"], let next = current.resolving(location) {
                _ = try? await response.collect(upTo: 1 << 20)
                current = next
                continue
            }
            if status == 200 || status == 206 || status == 416 { return response }
            let body = (try? await response.collect(upTo: 64 << 10)) ?? []
            try check(response, body: body, url: current, what: current.path)
            return response
        }
        throw HubError(failure: .unreachable, message: "\(target.url.host): too many redirects")
    }

    private func send(_ method: String, _ url: HTTPURL, what: String, extra: HTTPHeaders = HTTPHeaders()) async throws(HubError) -> HTTPClientResponse {
        do {
            return try await web.send(method, url, headers: headers(for: url, extra: extra), timeout: timeout)
        } catch is CancellationError {
            throw HubError(failure: .other, message: "cancelled")
        } catch {
            throw HubError(failure: .unreachable, message: "\(url.origin) could not be reached for \(what): \(error)")
        }
    }

    /// The hub's errors in words a user can act on (the `X-Error-Code` header names the case).
    func check(_ response: HTTPClientResponse, body: [UInt8], url: HTTPURL, what: String) throws(HubError) {
        let status = response.status.code
        guard status >= 400 else { return }
        let code = response.headers["x-error-code"] ?? ""
        let said = (try? JSONParser.parse(body).0)?["error"]?.stringValue ?? response.headers["x-error-message"] ?? ""
        let detail = said.isEmpty ? "" : " (the hub said: \(said.prefix(300)))"
        let page = "\(endpoint.origin)/\(what.split(separator: "/").prefix(2).joined(separator: "/"))"
        switch status {
        case 401 where code == "GatedRepo":
            throw HubError(failure: .unauthorized, message: "\(what) is a gated repository: accept its terms at \(page) and set HF_TOKEN to a token of that account\(detail)")
        case 401 where token == nil:
            throw HubError(failure: .notFound, message: "\(what) was not found on \(endpoint.origin), or it is private: check the name, or set HF_TOKEN\(detail)")
        case 401:
            throw HubError(failure: .unauthorized, message: "\(endpoint.origin) refused the token in HF_TOKEN for \(what) (it is invalid, or the repository does not exist)\(detail)")
        case 403 where code == "GatedRepo":
            throw HubError(failure: .forbidden, message: "\(what) is gated and the account of HF_TOKEN has not been granted access: ask for it at \(page)\(detail)")
        case 403:
            throw HubError(failure: .forbidden, message: "\(endpoint.origin) refused access to \(what) (a token without that permission?)\(detail)")
        case 404:
            throw HubError(failure: .notFound, message: "\(what) was not found on \(endpoint.origin)\(code.isEmpty ? "" : " (\(code))")\(detail)")
        case 429:
            let retry = Self.rateLimitReset(response.headers["ratelimit"])
            var e = HubError(failure: .rateLimited, message: "\(endpoint.origin) is rate-limiting requests\(retry.map { ": try again in \($0) s" } ?? ""); setting HF_TOKEN raises the limit\(detail)")
            e.retryAfter = retry
            throw e
        default:
            throw HubError(failure: status >= 500 ? .unreachable : .other, message: "\(url.origin) answered \(status) for \(what)\(detail)")
        }
    }

    /// `t=` of a `RateLimit: "resolvers";r=0;t=42` header.
    static func rateLimitReset(_ value: String?) -> Int? {
        guard let value else { return nil }
        for field in value.split(separator: ";") {
            let f = field.trimmingSpaces()
            if f.hasPrefix("t="), let n = Int(f.dropFirst(2)) { return n }
        }
        return nil
    }
}

extension String {
    /// nil for an empty string.
    var nonEmpty: String? { isEmpty ? nil : self }
}
