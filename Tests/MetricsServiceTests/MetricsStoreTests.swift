import Testing
@testable import MetricsService
@testable import Shared

@Suite struct MetricsStoreTests {
    func record(_ model: String, status: Int = 200, ttfb: Double = 40, duration: Double = 300, load: Int = 0) -> RequestRecord {
        RequestRecord(model: model, api: "openai", route: "/v1/chat/completions", status: status, timeToFirstByteMs: ttfb, durationMs: duration,
                      promptTokens: 10, completionTokens: 20, loadMs: load, overheadMs: 0.05, clientDisconnected: false)
    }

    @Test func histogramsAreCumulativeAndLabelsEscaped() async {
        let store = MetricsStore()
        await store.record(record("a\"b\\c\nd", ttfb: 7, duration: 30))
        await store.record(record("plain", status: 404, ttfb: 200, duration: 200, load: 1500))
        let text = await store.prometheus(processGauges: [])
        #expect(text.contains(#"model="a\"b\\c\nd""#), "quote, backslash and newline are escaped")
        // 7 ms is ≤ 0.01 and every bound above it: buckets are cumulative.
        #expect(text.contains(#"llama_runner_time_to_first_byte_seconds_bucket{api="openai",model="plain",le="0.1"} 0"#))
        #expect(text.contains(#"llama_runner_time_to_first_byte_seconds_bucket{api="openai",model="plain",le="0.25"} 1"#))
        #expect(text.contains(#"llama_runner_model_load_duration_seconds_count{model="plain"} 1"#))
        #expect(text.contains(#"llama_runner_requests_total{api="openai",model="plain",route="/v1/chat/completions",status="404"} 1"#))
        let families = text.split(separator: "\n").filter { $0.hasPrefix("# TYPE") }.map { $0.split(separator: " ")[2] }
        #expect(families == families.sorted(), "families are sorted")
    }

    @Test func summaryComputesRatesPercentilesAndErrors() async {
        let store = MetricsStore()
        for i in 1...10 { await store.record(record("m", ttfb: Double(i * 10), duration: 1000)) }
        await store.record(record("m", status: 500))
        let s = await store.summary(window: 60)
        #expect(s.overall.requests == 11)
        #expect(s.overall.errors == 1)
        #expect(s.models["m"]?.timeToFirstTokenP50Ms == 60)
        #expect(s.overall.tokensPerSecond ?? 0 > 0)
        #expect(await store.latest(3).count == 3)
    }

    @Test func seriesSampleEveryTwoSecondsAndAverageEveryMinute() async throws {
        let store = MetricsStore()
        let start = (MetricsStore.unixNow() / 60).rounded(.down) * 60 + 1
        await store.sample(now: start)
        for i in 0..<4 { await store.record(record("m", ttfb: Double(10 * (i + 1)))) }
        await store.sample(now: MetricsStore.unixNow())
        let fine = try await store.series(SeriesRequest(name: "requests_per_second", window: "1h"))
        #expect(fine.stepSeconds == 2)
        #expect(fine.points.count == 2)
        #expect((fine.points.last?[1] ?? 0) > 0)
        let ttft = try await store.series(SeriesRequest(name: "ttft_p50_ms", window: "1h"))
        #expect(ttft.points.last?[1] == 30)
        await store.sample(now: start + 60)
        let coarse = try await store.series(SeriesRequest(name: "requests_per_second", window: "24h"))
        #expect(coarse.stepSeconds == 60 && !coarse.points.isEmpty)
        await #expect(throws: RPCFault.self) { try await store.series(SeriesRequest(name: "nope")) }
        await #expect(throws: RPCFault.self) { try await store.series(SeriesRequest(name: "error_rate", window: "7d")) }
    }
}
