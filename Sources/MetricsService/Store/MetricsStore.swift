import Glibc
import Shared

/// Request records from the gateway: counters and histograms by model, API and route template (never
/// a raw path), and the last 1,000 requests. An actor: records arrive as notifications, at any rate.
actor MetricsStore {
    struct Key: Hashable, Comparable {
        let labels: [String]  // alternating name, value; sorted by name
        static func < (a: Key, b: Key) -> Bool { a.labels.lexicographicallyPrecedes(b.labels) }
    }

    struct Histogram {
        static let bounds: [Double] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120]
        var counts = [Int](repeating: 0, count: Histogram.bounds.count)
        var sum = 0.0
        var count = 0
        mutating func observe(_ v: Double) {
            for (i, b) in Self.bounds.enumerated() where v <= b { counts[i] += 1 }
            sum += v
            count += 1
        }
    }

    static let keep = 1000
    /// Series names, in the order of a sample's values.
    static let seriesNames = ["requests_per_second", "error_rate", "ttft_p50_ms", "tokens_per_second", "runner_memory_bytes"]
    /// 1 hour at 2 s, and 24 hours at 1 min.
    static let fineCapacity = 1800
    static let coarseCapacity = 1440
    private var fine: [(at: Double, values: [Double?])] = []
    private var coarse: [(at: Double, values: [Double?])] = []
    private var lastSampleAt = 0.0
    private var runnerMemory = 0.0
    private var recent: [TimedRecord] = []
    private var requests: [Key: Int] = [:]
    private var tokens: [Key: Int] = [:]
    /// Prompt tokens reused from runners' prompt caches (a part of the prompt tokens above).
    private var cachedTokens: [Key: Int] = [:]
    private var disconnects: [Key: Int] = [:]
    private var duration: [Key: Histogram] = [:]
    private var firstByte: [Key: Histogram] = [:]
    private var loads: [Key: Histogram] = [:]
    private var overhead: [Key: Histogram] = [:]
    /// Transcriptions: seconds of audio received, and the time each took (request to end, without load).
    private var audioSeconds: [Key: Double] = [:]
    private var audioProcessing: [Key: Histogram] = [:]
    /// Sampled gauges (runner RSS, etc.), replaced on each sample.
    private var gauges: [String: (help: String, counter: Bool, values: [Key: Double])] = [:]

    static func key(_ pairs: [(String, String)]) -> Key {
        Key(labels: pairs.sorted { $0.0 < $1.0 }.flatMap { [$0.0, $0.1] })
    }

    static func unixNow() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    func record(_ r: RequestRecord) {
        recent.append(TimedRecord(at: Self.unixNow(), record: r))
        if recent.count > Self.keep { recent.removeFirst(recent.count - Self.keep) }
        requests[Self.key([("model", r.model), ("api", r.api), ("route", r.route), ("status", String(r.status))]), default: 0] += 1
        tokens[Self.key([("model", r.model), ("kind", "prompt")]), default: 0] += r.promptTokens
        tokens[Self.key([("model", r.model), ("kind", "completion")]), default: 0] += r.completionTokens
        if let cached = r.cachedTokens, cached > 0 { cachedTokens[Self.key([("model", r.model)]), default: 0] += cached }
        if r.clientDisconnected { disconnects[Self.key([("model", r.model), ("api", r.api)]), default: 0] += 1 }
        let k = Self.key([("model", r.model), ("api", r.api)])
        duration[k, default: Histogram()].observe(r.durationMs / 1000)
        firstByte[k, default: Histogram()].observe(r.timeToFirstByteMs / 1000)
        overhead[Self.key([("api", r.api)]), default: Histogram()].observe(r.overheadMs / 1000)
        if r.route.hasPrefix("/v1/audio/") && r.status < 400 {
            let m = Self.key([("model", r.model)])
            if let seconds = r.audioSeconds { audioSeconds[m, default: 0] += seconds }
            audioProcessing[m, default: Histogram()].observe(max(0, r.durationMs - Double(r.loadMs)) / 1000)
        }
        if r.loadMs > 0 { loads[Self.key([("model", r.model)]), default: Histogram()].observe(Double(r.loadMs) / 1000) }
    }

    /// Replaces a sampled family; `counter` when the source's values only grow (its own totals).
    func setGauge(_ name: String, help: String, values: [Key: Double], counter: Bool = false) {
        gauges[name] = (help, counter, values)
        if name == "llama_runner_runner_resident_memory_bytes" { runnerMemory = values.values.reduce(0, +) }
    }

    /// Appends one point per series for the interval since the last sample (called every 2 s), and
    /// every minute one averaged point to the 24 h buffer.
    func sample(now: Double = MetricsStore.unixNow()) {
        let since = lastSampleAt == 0 ? now - 2 : lastSampleAt
        lastSampleAt = now
        let window = recent.filter { $0.at > since && $0.at <= now }
        let seconds = max(0.001, now - since)
        let errors = window.filter { $0.record.status >= 400 }.count
        let ttft = window.filter { $0.record.status < 400 }.map(\.record.timeToFirstByteMs).sorted()
        let tokens = window.reduce(0) { $0 + $1.record.completionTokens }
        let values: [Double?] = [Double(window.count) / seconds, window.isEmpty ? nil : Double(errors) / Double(window.count),
                                 ttft.isEmpty ? nil : ttft[ttft.count / 2], Double(tokens) / seconds, runnerMemory]
        fine.append((now, values))
        if fine.count > Self.fineCapacity { fine.removeFirst(fine.count - Self.fineCapacity) }
        let minute = (now / 60).rounded(.down) * 60
        if coarse.last.map({ $0.at < minute }) ?? true {
            let lastMinute = fine.filter { $0.at > minute - 60 && $0.at <= minute }
            if !lastMinute.isEmpty || !coarse.isEmpty {
                let averaged: [Double?] = (0..<Self.seriesNames.count).map { i in
                    let vs = lastMinute.compactMap { $0.values[i] }
                    return vs.isEmpty ? nil : vs.reduce(0, +) / Double(vs.count)
                }
                coarse.append((minute, averaged))
                if coarse.count > Self.coarseCapacity { coarse.removeFirst(coarse.count - Self.coarseCapacity) }
            }
        }
    }

    func series(_ request: SeriesRequest) throws(RPCFault) -> Series {
        guard let index = Self.seriesNames.firstIndex(of: request.name) else {
            throw RPCFault.invalidParams("unknown series \(request.name); one of \(Self.seriesNames.joined(separator: ", "))")
        }
        switch request.window {
        case "1h": return Series(name: request.name, window: "1h", stepSeconds: 2, points: fine.map { [$0.at, $0.values[index]] })
        case "24h": return Series(name: request.name, window: "24h", stepSeconds: 60, points: coarse.map { [$0.at, $0.values[index]] })
        default: throw RPCFault.invalidParams("window must be 1h or 24h")
        }
    }

    func latest(_ limit: Int) -> [TimedRecord] { Array(recent.suffix(max(0, min(limit, Self.keep))).reversed()) }

    /// Requests/s, error rate, time to first token p50/p95, tokens/s and load time, over `window` seconds.
    func summary(window: Double = 300) -> MetricsSummary {
        let since = Self.unixNow() - window
        let inWindow = recent.filter { $0.at >= since }
        func figures(_ list: [TimedRecord]) -> MetricsSummary.Figures {
            func pct(_ values: [Double], _ p: Double) -> Double? {
                guard !values.isEmpty else { return nil }
                let s = values.sorted()
                return s[min(s.count - 1, Int((p * Double(s.count - 1)).rounded()))]
            }
            let errors = list.filter { $0.record.status >= 400 }.count
            let ttft = list.filter { $0.record.status < 400 }.map(\.record.timeToFirstByteMs)
            let generating = list.filter { $0.record.completionTokens > 0 }
            let genSeconds = generating.reduce(0.0) { $0 + max(0.001, ($1.record.durationMs - $1.record.timeToFirstByteMs) / 1000) }
            let genTokens = generating.reduce(0) { $0 + $1.record.completionTokens }
            return MetricsSummary.Figures(
                requests: list.count, errors: errors, requestsPerSecond: Double(list.count) / window,
                errorRate: list.isEmpty ? 0 : Double(errors) / Double(list.count),
                timeToFirstTokenP50Ms: pct(ttft, 0.5), timeToFirstTokenP95Ms: pct(ttft, 0.95),
                tokensPerSecond: genSeconds > 0 ? Double(genTokens) / genSeconds : nil,
                loadTimeP50Ms: pct(list.filter { $0.record.loadMs > 0 }.map { Double($0.record.loadMs) }, 0.5))
        }
        let byModel = Dictionary(grouping: inWindow, by: \.record.model).mapValues(figures)
        return MetricsSummary(windowSeconds: window, overall: figures(inWindow), models: byModel)
    }

    // MARK: Prometheus text exposition (format 0.0.4)

    static func escape(_ v: String) -> String {
        var out = ""
        for c in v {
            switch c {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.append(c)
            }
        }
        return out
    }

    static func labels(_ key: Key, extra: (String, String)? = nil) -> String {
        var pairs: [(String, String)] = stride(from: 0, to: key.labels.count, by: 2).map { (key.labels[$0], key.labels[$0 + 1]) }
        if let extra { pairs.append(extra) }
        guard !pairs.isEmpty else { return "" }
        return "{" + pairs.map { "\($0.0)=\"\(escape($0.1))\"" }.joined(separator: ",") + "}"
    }

    static func number(_ v: Double) -> String {
        if v.isInfinite { return v > 0 ? "+Inf" : "-Inf" }
        if v.rounded() == v && abs(v) < 1e15 { return String(Int(v)) }
        return "\(v)"
    }

    func prometheus(processGauges: [(String, String, Double)]) -> String {
        var families: [(name: String, text: String)] = []
        func counter(_ name: String, _ help: String, _ values: [Key: Int]) {
            var t = "# HELP \(name) \(help)\n# TYPE \(name) counter\n"
            for (k, v) in values.sorted(by: { $0.key < $1.key }) { t += "\(name)\(Self.labels(k)) \(v)\n" }
            families.append((name, t))
        }
        func histogram(_ name: String, _ help: String, _ values: [Key: Histogram]) {
            var t = "# HELP \(name) \(help)\n# TYPE \(name) histogram\n"
            for (k, h) in values.sorted(by: { $0.key < $1.key }) {
                for (i, b) in Histogram.bounds.enumerated() {
                    t += "\(name)_bucket\(Self.labels(k, extra: ("le", Self.number(b)))) \(h.counts[i])\n"
                }
                t += "\(name)_bucket\(Self.labels(k, extra: ("le", "+Inf"))) \(h.count)\n"
                t += "\(name)_sum\(Self.labels(k)) \(Self.number(h.sum))\n"
                t += "\(name)_count\(Self.labels(k)) \(h.count)\n"
            }
            families.append((name, t))
        }
        counter("llama_runner_requests_total", "Requests answered through the gateway, by model, API, route template and status.", requests)
        counter("llama_runner_tokens_total", "Tokens processed, by model and kind (prompt or completion).", tokens)
        counter("llama_runner_cached_prompt_tokens_total", "Prompt tokens reused from a runner's prompt cache instead of evaluated, by model (part of the prompt tokens).", cachedTokens)
        counter("llama_runner_client_disconnects_total", "Requests whose client went away before the end.", disconnects)
        histogram("llama_runner_request_duration_seconds", "Time from request to the end of the response.", duration)
        histogram("llama_runner_time_to_first_byte_seconds", "Time from request to the first response byte (first token when streaming).", firstByte)
        histogram("llama_runner_model_load_duration_seconds", "Time requests waited for a model to load.", loads)
        var audio = "# HELP llama_runner_audio_seconds_total Seconds of audio transcribed or translated (WAV uploads), by model.\n# TYPE llama_runner_audio_seconds_total counter\n"
        for (k, v) in audioSeconds.sorted(by: { $0.key < $1.key }) { audio += "llama_runner_audio_seconds_total\(Self.labels(k)) \(Self.number(v))\n" }
        families.append(("llama_runner_audio_seconds_total", audio))
        histogram("llama_runner_audio_processing_seconds", "Time to answer a transcription or translation, excluding the model load.", audioProcessing)
        histogram("llama_runner_gateway_overhead_seconds", "The gateway's own time per request, excluding loads and the runner.", overhead)
        for (name, gauge) in gauges {
            var t = "# HELP \(name) \(gauge.help)\n# TYPE \(name) \(gauge.counter ? "counter" : "gauge")\n"
            for (k, v) in gauge.values.sorted(by: { $0.key < $1.key }) { t += "\(name)\(Self.labels(k)) \(Self.number(v))\n" }
            families.append((name, t))
        }
        for (name, help, v) in processGauges {
            families.append((name, "# HELP \(name) \(help)\n# TYPE \(name) gauge\n\(name) \(Self.number(v))\n"))
        }
        return families.sorted { $0.name < $1.name }.map(\.text).joined()
    }
}
