import Shared
import Synchronization

/// One request's lease on a runner. It is released exactly once, by its owner's end: `release(usage:)`
/// when the response is complete (with the token counts), or, on every other path — the response head
/// could not be written, the body closure never ran, an error was thrown, the client went away — when
/// the last reference goes (`deinit`). No path has to remember to release it.
///
/// The lease also belongs, in runner-manager, to the gateway's control connection: if the gateway
/// dies, runner-manager releases it when that connection closes.
final class RunnerLease: Sendable {
    /// runner-manager's lease id (0 for `none`).
    let id: UInt64
    /// Who granted it; nil when nothing is held (a peer's model: the peer schedules its own runners).
    private let runners: RPCClient?
    private let released = Atomic<Bool>(false)
    /// Told once when the lease goes back (the gateway's count of its requests on each host).
    private let onRelease: (@Sendable () -> Void)?

    init(id: UInt64, runners: RPCClient, onRelease: (@Sendable () -> Void)? = nil) {
        self.id = id
        self.runners = runners
        self.onRelease = onRelease
    }

    private init() {
        id = 0
        runners = nil
        onRelease = nil
    }

    /// A request that holds nothing here (one relayed to a peer).
    static var none: RunnerLease { RunnerLease() }

    /// Hands the lease back now (idempotent; the first call's usage counts).
    func release(usage: Usage? = nil) {
        guard !released.exchange(true, ordering: .acquiringAndReleasing), let runners else { return }
        onRelease?()
        Self.send(id, usage: usage, via: runners)
    }

    deinit { release() }

    /// `runners.release`, off the caller's path: the request never waits for it.
    static func send(_ lease: UInt64, usage: Usage? = nil, via runners: RPCClient) {
        Task(executorPreference: EventLoop.shared) {
            _ = try? await runners.call(RunnersRPC.Release.self, ReleaseRequest(lease: lease, usage: usage), timeout: 10)
        }
    }
}
