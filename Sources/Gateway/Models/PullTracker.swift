import Shared
import Synchronization

/// The gateway's view of model pulls, which model-registry runs: starts them, and follows each one
/// through the registry's `registry.pullProgress` notifications, for the surfaces that stream a
/// pull's progress (Ollama's `/api/pull`, LM Studio's download status, the dashboard's events).
final class PullTracker: Sendable {
    let registry: RPCClient
    private struct Watchers {
        var next = 0
        var byJob: [String: [Int: AsyncStream<PullStatus>.Continuation]] = [:]
    }
    private let watchers = Mutex(Watchers())
    /// Told every status as it comes (the dashboard's event stream).
    let onProgress: @Sendable (PullStatus) -> Void
    /// The gateway's model table, read again before a finished pull is reported: the model a client
    /// is told is pulled must resolve in the very next request.
    let catalog: ModelCatalog?

    init(registry: RPCClient, catalog: ModelCatalog? = nil, onProgress: @escaping @Sendable (PullStatus) -> Void = { _ in }) {
        self.registry = registry
        self.catalog = catalog
        self.onProgress = onProgress
        registry.onNotification { [weak self] method, data in
            guard method == RegistryRPC.PullProgress.name, let self, let status = RPCClient.decode(RegistryRPC.PullProgress.self, from: data) else { return }
            if status.phase == .done, let catalog = self.catalog {
                Task(executorPreference: EventLoop.shared) {
                    await catalog.refresh()
                    self.deliver(status)
                }
            } else {
                self.deliver(status)
            }
        }
    }

    private func deliver(_ status: PullStatus) {
        onProgress(status)
        let targets = watchers.withLock { w -> [AsyncStream<PullStatus>.Continuation] in
            let list = Array((w.byJob[status.job] ?? [:]).values)
            if status.phase.isFinished { w.byJob[status.job] = nil }
            return list
        }
        for c in targets {
            c.yield(status)
            if status.phase.isFinished { c.finish() }
        }
    }

    /// Starts (or joins) a pull. A name that cannot be pulled is a 400.
    func start(_ name: String, quantization: String? = nil) async throws(APIError) -> PullStatus {
        do {
            return try await registry.call(RegistryRPC.Pull.self, PullRequest(name: name, quantization: quantization), timeout: 10)
        } catch {
            throw Self.apiError(error)
        }
    }

    func status(_ job: String) async throws(APIError) -> PullStatus {
        do {
            return try await registry.call(RegistryRPC.PullStatusGet.self, PullRef(job: job), timeout: 5)
        } catch {
            throw Self.apiError(error)
        }
    }

    func list() async throws(APIError) -> [PullStatus] {
        do {
            return try await registry.call(RegistryRPC.Pulls.self, Empty(), timeout: 5)
        } catch {
            throw Self.apiError(error)
        }
    }

    func cancel(_ job: String) async throws(APIError) -> PullStatus {
        do {
            return try await registry.call(RegistryRPC.CancelPull.self, PullRef(job: job), timeout: 5)
        } catch {
            throw Self.apiError(error)
        }
    }

    /// The pull's statuses from now until it ends: the current one first, then each change. Ends
    /// after the final status (done, failed or cancelled).
    func updates(_ job: String) -> AsyncStream<PullStatus> {
        let (stream, continuation) = AsyncStream<PullStatus>.makeStream(bufferingPolicy: .bufferingNewest(64))
        let id = watchers.withLock { w -> Int in
            w.next += 1
            w.byJob[job, default: [:]][w.next] = continuation
            return w.next
        }
        continuation.onTermination = { [weak self] _ in
            self?.watchers.withLock { w in _ = w.byJob[job]?.removeValue(forKey: id) }
        }
        // The state now, in case the pull moved on (or ended) before this watcher was registered.
        Task(executorPreference: EventLoop.shared) { [self] in
            if let now = try? await status(job) {
                if now.phase == .done { await catalog?.refresh() }
                continuation.yield(now)
                if now.phase.isFinished { continuation.finish() }
            }
        }
        return stream
    }

    /// What a failed call to the registry is answered with: a name the registry refused is 400, an
    /// unknown pull 404, the registry being down 503.
    static func apiError(_ error: any Error) -> APIError {
        guard case RPCError.remote(let fault) = error else { return APIError(.serviceUnavailable, "model-registry is unavailable: \(error)") }
        switch fault.code {
        case RPCFault.validationCode: return APIError(.badRequest, fault.message, param: "model")
        case RPCFault.notFoundCode: return APIError(.notFound, fault.message)
        default: return APIError(.internalServerError, fault.message)
        }
    }

    /// The HTTP status a failed pull is answered with.
    static func httpStatus(_ failure: PullFailure?) -> HTTPStatus {
        switch failure {
        case .invalidName?: .badRequest
        case .notFound?: .notFound
        case .unauthorized?: .unauthorized
        case .forbidden?: .forbidden
        case .rateLimited?: HTTPStatus(429)
        case .insufficientSpace?: HTTPStatus(507)
        case .checksumMismatch?, .unreachable?: .badGateway
        case .other?, nil: .internalServerError
        }
    }
}
