extension AppConfig {
    /// Another OpenAI-compatible server whose models this gateway offers as `<name>/<model>`
    /// (`peers.<name>` in `app_config.json`): another Llama Runner, llama-swap, vLLM, llama-server.
    public struct Peer: Codable, Sendable, Equatable {
        /// Its root, or its OpenAI base (`…/v1`, which is dropped): requests go to `<base>/v1/...`.
        public var baseURL: String
        /// Sent to it as `Authorization: Bearer`; a client's own credentials are never forwarded.
        public var apiKey: String?
        /// Which of its models are offered, as patterns (`*` matches any run of characters); empty = all.
        public var models: [String]
        /// Seconds between reads of its `/v1/models` (and so the longest a recovered peer stays down).
        public var pollIntervalSeconds: Double

        public init(baseURL: String, apiKey: String? = nil, models: [String] = [], pollIntervalSeconds: Double = 10) {
            self.baseURL = baseURL
            self.apiKey = apiKey
            self.models = models
            self.pollIntervalSeconds = pollIntervalSeconds
        }

        enum CodingKeys: String, CodingKey {
            case baseURL = "base_url", apiKey = "api_key", models, pollIntervalSeconds = "poll_interval_seconds"
        }
        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            baseURL = try c.decode(String.self, forKey: .baseURL)
            apiKey = try c.decodeIfPresent(String.self, forKey: .apiKey)
            models = try c.decodeIfPresent([String].self, forKey: .models) ?? []
            pollIntervalSeconds = try c.decodeIfPresent(Double.self, forKey: .pollIntervalSeconds) ?? 10
        }

        /// Whether the peer's model `id` is offered (the `models` filter).
        public func offers(_ id: String) -> Bool {
            models.isEmpty || models.contains { GlobPattern.matches($0, id) }
        }
    }
}

/// `*` (any run of characters, none included) in an otherwise literal pattern, matched against a
/// whole string: the one wildcard the config's pattern lists use (peer model filters, CORS origins).
public enum GlobPattern {
    public static func matches(_ pattern: String, _ text: String, ignoringCase: Bool = false) -> Bool {
        let p = Array((ignoringCase ? pattern.lowercased() : pattern).utf8), t = Array((ignoringCase ? text.lowercased() : text).utf8)
        var (pi, ti) = (0, 0)
        var star: Int? = nil, mark = 0
        while ti < t.count {
            if pi < p.count && p[pi] != UInt8(ascii: "*") && p[pi] == t[ti] {
                pi += 1; ti += 1
            } else if pi < p.count && p[pi] == UInt8(ascii: "*") {
                star = pi; mark = ti; pi += 1
            } else if let s = star {
                pi = s + 1; mark += 1; ti = mark
            } else {
                return false
            }
        }
        while pi < p.count && p[pi] == UInt8(ascii: "*") { pi += 1 }
        return pi == p.count
    }
}
