import Glibc
import Synchronization

/// A long-lived component: `start` returns once it is ready (ports bound, sockets listening),
/// `stop` ends it gracefully.
public protocol Service: Sendable {
    var name: String { get }
    func start() async throws
    func stop() async
}

/// Starts services in order and stops them in reverse, on SIGINT/SIGTERM or `requestShutdown`.
/// Graceful shutdown is bounded: after `grace` seconds a watchdog ends the process, so it always
/// ends (swift-service-lifecycle's rule).
public final class ServiceGroup: Sendable {
    private struct State {
        var requested = false
        var reason = ""
        var waiter: CheckedContinuation<Void, Never>?
    }

    let services: [any Service]
    let logger: Logger
    /// Seconds allowed for the whole graceful stop.
    public let grace: Double
    private let state = Mutex(State())

    public init(services: [any Service], logger: Logger, grace: Double = 4) {
        self.services = services
        self.logger = logger
        self.grace = grace
    }

    /// Asks the group to stop (idempotent).
    public func requestShutdown(reason: String) {
        let waiter = state.withLock { s -> CheckedContinuation<Void, Never>? in
            if s.requested { return nil }
            s.requested = true
            ProcessSignals.noteStopRequested()
            s.reason = reason
            defer { s.waiter = nil }
            return s.waiter
        }
        waiter?.resume()
    }

    /// Whether a stop was requested.
    public var isShuttingDown: Bool { state.withLock { $0.requested } }

    /// SIGINT and SIGTERM request shutdown; a signal while stopping exits at once (`ProcessSignals`).
    public func handleSignals(loop: EventLoop) {
        ProcessSignals.handle(on: loop) { [self] name in requestShutdown(reason: name) }
    }

    /// Runs the group: start all, wait for a stop request, stop all. Returns the exit code.
    public func run() async -> Int32 {
        var started: [any Service] = []
        for service in services {
            if isShuttingDown { break }
            do {
                try await service.start()
                started.append(service)
                logger.debug("started \(service.name)")
            } catch {
                let code = (error is ConfigError || error is SocketError) ? ExitCode.config : ExitCode.failure
                logger.error("cannot start \(service.name): \(error)")
                await stop(started)
                return code
            }
        }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let now = state.withLock { s -> Bool in
                if s.requested { return true }
                s.waiter = continuation
                return false
            }
            if now { continuation.resume() }
        }
        let reason = state.withLock { $0.reason }
        logger.info("stopping", ("reason", reason))
        await stop(started)
        return ExitCode.ok
    }

    private func stop(_ started: [any Service]) async {
        let logger = self.logger
        let grace = self.grace
        // A stop that hangs is a failure: the launcher (or systemd) must see it as one.
        exitAfter(seconds: grace, code: ExitCode.failure) {
            logger.error("graceful stop took longer than \(grace) s; exiting")
        }
        for service in started.reversed() {
            await service.stop()
            logger.debug("stopped \(service.name)")
        }
    }
}
