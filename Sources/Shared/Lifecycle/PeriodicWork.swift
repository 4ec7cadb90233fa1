import Synchronization

/// The periodic work a service owns (hand-edit checks, discovery, idle unloads, metrics samples, log
/// tails, memory trims, the launcher watch): each job runs on the service's loop every interval, and all
/// of them end with the service. As a component of the service group it is stopped first, so no tick
/// runs while the components it touches stop, and none outlives them: stopping cancels every job and
/// waits until each has returned.
public final class PeriodicWork: Service {
    public var name: String { "periodic work" }
    let loop: EventLoop
    private let jobs = Mutex<(stopped: Bool, tasks: [Task<Void, Never>])>((false, []))

    public init(loop: EventLoop) { self.loop = loop }

    /// Runs `body` every `seconds` (the first time after one interval).
    public func every(_ seconds: Double, _ body: @escaping @Sendable () async -> Void) {
        every(interval: { seconds }, body)
    }

    /// Runs `body` after each interval that `interval` gives (asked before each wait, so a config
    /// change takes effect at the next one).
    public func every(interval: @escaping @Sendable () async -> Double, _ body: @escaping @Sendable () async -> Void) {
        let loop = self.loop
        jobs.withLock { state in
            guard !state.stopped else { return }
            state.tasks.append(Task(executorPreference: loop) {
                while !Task.isCancelled {
                    do {
                        try await loop.sleep(seconds: await interval())
                    } catch {
                        return  // cancelled
                    }
                    if Task.isCancelled { return }
                    await body()
                }
            })
        }
    }

    /// Jobs running now.
    public var count: Int { jobs.withLock { $0.tasks.count } }

    public func start() async throws {}

    /// Cancels every job and waits for each to return; jobs asked for afterwards never start.
    public func stop() async {
        let tasks = jobs.withLock { state -> [Task<Void, Never>] in
            state.stopped = true
            defer { state.tasks = [] }
            return state.tasks
        }
        for task in tasks { task.cancel() }
        for task in tasks { await task.value }
    }
}
