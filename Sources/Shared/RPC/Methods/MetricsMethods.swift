/// One finished request, sent by the gateway as a `metrics.record` notification (fire and forget:
/// metrics being down never fails or slows a request).
public struct RequestRecord: Codable, Sendable, Equatable {
    public var model: String
    /// `openai`, `ollama`, `lmstudio`, `anthropic`, `llama`.
    public var api: String
    /// The route template, never the raw path (e.g. `/v1/chat/completions`).
    public var route: String
    public var status: Int
    public var timeToFirstByteMs: Double
    public var durationMs: Double
    public var promptTokens: Int
    public var completionTokens: Int
    /// Prompt tokens reused from the runner's prompt cache (part of `promptTokens`).
    public var cachedTokens: Int?
    public var loadMs: Int
    public var overheadMs: Double
    public var clientDisconnected: Bool
    /// Seconds of audio in a transcription request (WAV uploads), nil for everything else.
    public var audioSeconds: Double?
    /// Why the request failed after its head was sent (the status then says 502), or why the runner
    /// refused it; nil when it succeeded.
    public var error: String?
    /// The gateway's id for the exchange (its in-flight entry, and its captured bodies when the dashboard keeps them).
    public var requestId: String?
    public init(model: String, api: String, route: String, status: Int, timeToFirstByteMs: Double, durationMs: Double,
                promptTokens: Int, completionTokens: Int, cachedTokens: Int? = nil, loadMs: Int, overheadMs: Double,
                clientDisconnected: Bool, audioSeconds: Double? = nil, error: String? = nil, requestId: String? = nil) {
        self.requestId = requestId
        self.cachedTokens = cachedTokens
        self.error = error
        self.model = model
        self.api = api
        self.route = route
        self.status = status
        self.timeToFirstByteMs = timeToFirstByteMs
        self.durationMs = durationMs
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
        self.loadMs = loadMs
        self.overheadMs = overheadMs
        self.clientDisconnected = clientDisconnected
        self.audioSeconds = audioSeconds
    }
}

public enum MetricsRPC {
    public enum Record: RPCNotification {
        public typealias Params = RequestRecord
        public static let name = "metrics.record"
    }
}

/// `metrics.summary`: per model and overall.
public struct MetricsSummary: Codable, Sendable, Equatable {
    public struct Figures: Codable, Sendable, Equatable {
        public var requests: Int
        public var errors: Int
        public var requestsPerSecond: Double
        public var errorRate: Double
        public var timeToFirstTokenP50Ms: Double?
        public var timeToFirstTokenP95Ms: Double?
        public var tokensPerSecond: Double?
        public var loadTimeP50Ms: Double?
        public init(requests: Int, errors: Int, requestsPerSecond: Double, errorRate: Double, timeToFirstTokenP50Ms: Double?,
                    timeToFirstTokenP95Ms: Double?, tokensPerSecond: Double?, loadTimeP50Ms: Double?) {
            self.requests = requests
            self.errors = errors
            self.requestsPerSecond = requestsPerSecond
            self.errorRate = errorRate
            self.timeToFirstTokenP50Ms = timeToFirstTokenP50Ms
            self.timeToFirstTokenP95Ms = timeToFirstTokenP95Ms
            self.tokensPerSecond = tokensPerSecond
            self.loadTimeP50Ms = loadTimeP50Ms
        }
    }
    /// Over the last `windowSeconds`.
    public var windowSeconds: Double
    public var overall: Figures
    public var models: [String: Figures]
    public init(windowSeconds: Double, overall: Figures, models: [String: Figures]) {
        self.windowSeconds = windowSeconds
        self.overall = overall
        self.models = models
    }
}

/// A recorded request with its time.
public struct TimedRecord: Codable, Sendable, Equatable {
    /// Unix time, seconds.
    public var at: Double
    public var record: RequestRecord
    public init(at: Double, record: RequestRecord) {
        self.at = at
        self.record = record
    }
}

public struct RecordsRequest: Codable, Sendable {
    public var limit: Int?
    public init(limit: Int? = nil) { self.limit = limit }
}

extension MetricsRPC {
    public enum Summary: RPCMethod {
        public typealias Params = Empty
        public typealias Result = MetricsSummary
        public static let name = "metrics.summary"
    }

    /// The last requests, newest first (at most 1,000 are kept).
    public enum Requests: RPCMethod {
        public typealias Params = RecordsRequest
        public typealias Result = [TimedRecord]
        public static let name = "metrics.requests"
    }

    /// Everything in the Prometheus text exposition format (served at :8585/metrics).
    public enum Prometheus: RPCMethod {
        public typealias Params = Empty
        public typealias Result = String
        public static let name = "metrics.prometheus"
    }
}

/// `metrics.series` params: a series name and a window (`1h` at 2 s resolution, `24h` at 1 min).
public struct SeriesRequest: Codable, Sendable {
    public var name: String
    public var window: String
    public init(name: String, window: String = "1h") {
        self.name = name
        self.window = window
    }
}

/// Points of one series: unix seconds and values (nil where nothing was measured).
public struct Series: Codable, Sendable, Equatable {
    public var name: String
    public var window: String
    public var stepSeconds: Double
    public var points: [[Double?]]
    public init(name: String, window: String, stepSeconds: Double, points: [[Double?]]) {
        self.name = name
        self.window = window
        self.stepSeconds = stepSeconds
        self.points = points
    }
}

extension MetricsRPC {
    /// One of `requests_per_second`, `error_rate`, `ttft_p50_ms`, `tokens_per_second`, `runner_memory_bytes`.
    public enum SeriesQuery: RPCMethod {
        public typealias Params = SeriesRequest
        public typealias Result = Series
        public static let name = "metrics.series"
    }
}
