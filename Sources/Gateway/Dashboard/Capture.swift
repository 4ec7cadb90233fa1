import Shared
import Synchronization

/// The bodies of the last model requests and their answers (`dashboard.capture`, off by default), for
/// the Activity page's detail view: in memory only, at most `limit` exchanges and `bodyLimit` bytes of
/// each body, without `Authorization`, `x-api-key` or any other credential header.
final class CaptureRing: Sendable {
    struct Exchange: Codable, Sendable, Equatable {
        var id: String
        var method: String
        var path: String
        var model: String
        /// Request headers, credentials left out.
        var requestHeaders: [String: String]
        var requestBody: String
        var requestTruncated: Bool
        var status: Int?
        var responseBody: String
        var responseTruncated: Bool
    }

    let limit: Int
    let bodyLimit: Int
    private let exchanges = Mutex<[Exchange]>([])

    init(limit: Int = 200, bodyLimit: Int = 64 << 10) {
        self.limit = limit
        self.bodyLimit = bodyLimit
    }

    /// Headers that carry credentials (or cookies): never kept.
    static let secretHeaders: Set<String> = ["authorization", "x-api-key", "x-admin-token", "cookie", "proxy-authorization", "api-key"]

    func add(_ exchange: Exchange) {
        exchanges.withLock { list in
            list.append(exchange)
            if list.count > limit { list.removeFirst(list.count - limit) }
        }
    }

    func find(_ id: String) -> Exchange? { exchanges.withLock { $0.last { $0.id == id } } }

    /// Collects one exchange while it runs; handed to the ring when its ticket ends.
    final class Recorder: Sendable {
        private struct State {
            var request: [UInt8] = []
            var requestTruncated = false
            var response: [UInt8] = []
            var responseTruncated = false
            var status: Int?
        }
        private let state = Mutex(State())
        let headers: [String: String]
        let limit: Int

        init(headers: HTTPHeaders, limit: Int) {
            var kept: [String: String] = [:]
            for (name, value) in headers.fields where !CaptureRing.secretHeaders.contains(name.lowercased()) {
                kept[name.lowercased()] = value
            }
            self.headers = kept
            self.limit = limit
        }

        func request(_ bytes: ArraySlice<UInt8>) {
            state.withLock { s in
                let room = max(0, limit - s.request.count)
                s.request += bytes.prefix(room)
                if bytes.count > room { s.requestTruncated = true }
            }
        }

        func response(status: Int) { state.withLock { $0.status = status } }

        func response(_ bytes: ArraySlice<UInt8>) {
            state.withLock { s in
                let room = max(0, limit - s.response.count)
                s.response += bytes.prefix(room)
                if bytes.count > room { s.responseTruncated = true }
            }
        }

        func exchange(id: String, method: String, path: String, model: String) -> Exchange {
            state.withLock { s in
                Exchange(id: id, method: method, path: path, model: model, requestHeaders: headers,
                         requestBody: String(decoding: s.request, as: UTF8.self), requestTruncated: s.requestTruncated, status: s.status,
                         responseBody: String(decoding: s.response, as: UTF8.self), responseTruncated: s.responseTruncated)
            }
        }
    }
}

/// A response writer that also hands what it writes to a capture.
final class CapturingWriter: HTTPBodyWriter {
    let inner: any HTTPBodyWriter
    let recorder: CaptureRing.Recorder
    init(_ inner: any HTTPBodyWriter, recorder: CaptureRing.Recorder) {
        self.inner = inner
        self.recorder = recorder
    }
    func write(_ bytes: [UInt8]) async throws {
        recorder.response(bytes[...])
        try await inner.write(bytes)
    }
}
