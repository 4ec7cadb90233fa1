import Shared
import Synchronization

/// The requests being served now, for the dashboard's in-flight table and its cancel button.
///
/// `InFlightHandler` wraps each API port: every POST gets an `InFlightTicket` for the whole exchange —
/// its handler and, for a streamed answer, the response body after it — and the ticket is the entry:
/// it leaves the table when the ticket ends (its `deinit`), so no path has to remember to remove it.
/// The relay tells the ticket its model and phase (`InFlightTicket.current`, a task-local); requests
/// that never reach a model (a pull, a create) stay out of the listing.
///
/// A cancel runs both parts under `InFlightTicket.cancelling`: the part running now is cancelled, so the
/// wait for a runner gives up its place and a stream's upstream read ends, the runner connection is
/// closed and the lease goes back by its own end, as when the client leaves.
final class InFlightTable: Sendable {
    /// What the dashboard lists of one request.
    struct Entry: Codable, Sendable, Equatable {
        var id: String
        /// The port's surface (`ollama`, `lmstudio`).
        var port: String
        var method: String
        var path: String
        var model: String
        var phase: InFlightTicket.Phase
        /// Unix time in milliseconds.
        var startedAt: Int
        var cancelled: Bool
    }

    private let tickets = Mutex<(next: UInt64, live: [UInt64: Weak])>((1, [:]))
    /// Where finished exchanges' bodies go when `dashboard.capture` is on (nil: nothing is kept).
    let capture: CaptureRing?

    init(capture: CaptureRing? = nil) { self.capture = capture }

    struct Weak: @unchecked Sendable {
        // @unchecked Sendable: a weak reference read under the table's lock; the ticket itself is Sendable.
        weak var ticket: InFlightTicket?
    }

    func begin(port: String, method: String, path: String, headers: HTTPHeaders = HTTPHeaders()) -> InFlightTicket {
        let recorder = capture.map { CaptureRing.Recorder(headers: headers, limit: $0.bodyLimit) }
        return tickets.withLock { t in
            let id = t.next
            t.next &+= 1
            let ticket = InFlightTicket(id: id, table: self, port: port, method: method, path: path, recorder: recorder)
            t.live[id] = Weak(ticket: ticket)
            return ticket
        }
    }

    fileprivate func end(_ id: UInt64, capture exchange: CaptureRing.Exchange?) {
        _ = tickets.withLock { $0.live.removeValue(forKey: id) }
        if let exchange { capture?.add(exchange) }
    }

    /// The requests that reached a model, oldest first.
    func list() -> [Entry] {
        let live = tickets.withLock { t in t.live.values.compactMap(\.ticket) }
        return live.compactMap { $0.entry }.sorted { $0.startedAt == $1.startedAt ? $0.id < $1.id : $0.startedAt < $1.startedAt }
    }

    /// Cancels the request `id`; false when there is none (it ended, or never reached a model).
    func cancel(_ id: String) -> Bool {
        guard let key = UInt64(id), let ticket = tickets.withLock({ $0.live[key]?.ticket }), ticket.entry != nil else { return false }
        ticket.cancel()
        return true
    }

    /// Ends every request being answered by a runner on `host` (which stopped answering): each ends
    /// with a well-formed error instead of waiting on a connection that may never say more.
    @discardableResult
    func cancel(host: String, reason: String) -> Int {
        let live = tickets.withLock { t in t.live.values.compactMap(\.ticket) }
        var n = 0
        for ticket in live where ticket.host == host {
            ticket.cancel(.hostDown(host: host, reason: reason))
            n += 1
        }
        return n
    }

    var count: Int { tickets.withLock { $0.live.count } }
}

final class InFlightTicket: Sendable {
    enum Phase: String, Codable, Sendable {
        /// Waiting for its runner: in the queue, or for a load.
        case waiting
        /// The runner is answering.
        case answering
    }

    /// The ticket of the request this task serves (nil outside `InFlightHandler`).
    @TaskLocal static var current: InFlightTicket?

    let id: UInt64
    private let table: InFlightTable
    private let port: String
    private let method: String
    private let path: String
    private let startedAt = unixMillis()
    /// Its bodies, when the dashboard captures them.
    let recorder: CaptureRing.Recorder?
    private let state = Mutex<(model: String?, phase: Phase, cancel: CancelReason?, running: RunningTask?, host: String?)>((nil, .waiting, nil, nil, nil))

    /// Why a request was ended from outside.
    enum CancelReason: Sendable, Equatable {
        /// The dashboard's cancel button (recorded as 499).
        case dashboard
        /// The runner's host stopped answering (502).
        case hostDown(host: String, reason: String)
    }

    /// The task running a `cancelling` operation, registered only while the operation runs in it.
    struct RunningTask: @unchecked Sendable {
        // @unchecked Sendable: an UnsafeCurrentTask is valid while its task runs; it is set by that task
        // before the operation and cleared by it after, both under the ticket's lock, and only used
        // (cancelled) under that lock in between.
        let task: UnsafeCurrentTask
    }

    fileprivate init(id: UInt64, table: InFlightTable, port: String, method: String, path: String, recorder: CaptureRing.Recorder?) {
        self.id = id
        self.table = table
        self.port = port
        self.method = method
        self.path = path
        self.recorder = recorder
    }

    /// Its end takes it off the table, and hands a model request's bodies to the capture.
    deinit {
        let model = state.withLock { $0.model }
        table.end(id, capture: model.flatMap { m in recorder?.exchange(id: String(id), method: method, path: path, model: m) })
    }

    var entry: InFlightTable.Entry? {
        state.withLock { s in
            s.model.map { InFlightTable.Entry(id: String(id), port: port, method: method, path: path, model: $0, phase: s.phase,
                                              startedAt: startedAt, cancelled: s.cancel != nil) }
        }
    }

    var isCancelled: Bool { state.withLock { $0.cancel != nil } }
    var cancelReason: CancelReason? { state.withLock { $0.cancel } }

    /// The host whose runner answers it (set once granted).
    var host: String? { state.withLock { $0.host } }
    func update(host: String) { state.withLock { $0.host = host } }

    /// What a request cancelled from the dashboard is answered and recorded with.
    static func cancelledMessage(_ model: String) -> String { "the request to \(model) was cancelled from the Llama Runner dashboard" }

    /// What this cancelled request is answered and recorded with, and the status it is recorded as.
    func cancelOutcome(_ model: String) -> (message: String, status: Int)? {
        switch cancelReason {
        case nil: nil
        case .dashboard: (Self.cancelledMessage(model), 499)
        case .hostDown(let host, let reason):
            ("host '\(host)' stopped answering (\(reason)); the request to \(model) was ended: send it again to use another host", 502)
        }
    }

    func update(model: String, phase: Phase) {
        state.withLock { s in
            s.model = model
            s.phase = phase
        }
    }

    func cancel(_ reason: CancelReason = .dashboard) {
        state.withLock { s in
            if s.cancel == nil { s.cancel = reason }
            s.running?.task.cancel()
        }
    }

    /// Runs `operation` in this task; a cancel of the ticket meanwhile cancels the task, which ends the
    /// operation as a departed client's would (waits give up, reads and writes fail). No child task is
    /// made: the operation runs where it was called.
    func cancelling<T>(_ operation: () async throws -> T) async throws -> T {
        let cancelledAlready = withUnsafeCurrentTask { task -> Bool in
            state.withLock { s in
                if let task, s.cancel == nil { s.running = RunningTask(task: task) }
                return s.cancel != nil
            }
        }
        if cancelledAlready { throw CancellationError() }
        defer { state.withLock { $0.running = nil } }
        return try await operation()
    }
}

/// Gives each POST on an API port its `InFlightTicket`, held through the handler and the response body.
struct InFlightHandler: HTTPHandler {
    let next: any HTTPHandler
    let table: InFlightTable
    let port: String

    func handle(_ request: HTTPRequest) async throws -> HTTPResponse {
        guard request.method == "POST" else { return try await next.handle(request) }
        let ticket = table.begin(port: port, method: request.method, path: String(request.path), headers: request.headers)
        if let recorder = ticket.recorder { request.body.tap = { recorder.request($0) } }
        var response = try await InFlightTicket.$current.withValue(ticket) {
            try await ticket.cancelling { try await next.handle(request) }
        }
        ticket.recorder?.response(status: response.status.code)
        switch response.body {
        case .stream(let length, let producer):
            response.body = .stream(contentLength: length) { writer in
                let sink: any HTTPBodyWriter = ticket.recorder.map { CapturingWriter(writer, recorder: $0) } ?? writer
                try await InFlightTicket.$current.withValue(ticket) {
                    try await ticket.cancelling { try await producer(sink) }
                }
            }
        case .bytes(let bytes):
            ticket.recorder?.response(bytes[...])
        case .upgrade:
            break
        }
        return response
    }
}
