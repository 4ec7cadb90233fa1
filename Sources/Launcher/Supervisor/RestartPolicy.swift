/// When to restart a service that exited unexpectedly. A pure state machine (no clock, no
/// processes) so each rule is tested alone:
/// - the delay starts at 100 ms and doubles up to 5 s;
/// - it resets once the service has been healthy for 60 s;
/// - a fifth crash within 60 s stops the retries;
/// - a configuration error (exit 78) is never retried: the same config fails the same way.
struct RestartPolicy: Sendable {
    enum Decision: Equatable {
        case restart(afterSeconds: Double)
        case giveUp(reason: String)
    }

    static let initialDelay = 0.1
    static let maxDelay = 5.0
    static let healthyResetSeconds = 60.0
    static let crashWindowSeconds = 60.0
    static let maxCrashesInWindow = 5

    private(set) var delay = RestartPolicy.initialDelay
    private(set) var recentCrashes: [Double] = []

    /// Records a crash at `now` (seconds on any monotonic clock) of a service that had been healthy
    /// since `healthySince` (nil if it never became healthy), and decides.
    mutating func crashed(at now: Double, healthySince: Double?, exitCode: Int32?) -> Decision {
        if exitCode == 78 {
            return .giveUp(reason: "it exited with a configuration error (exit code 78); fix the configuration and run `launcher restart`")
        }
        if let since = healthySince, now - since >= Self.healthyResetSeconds {
            delay = Self.initialDelay
        }
        recentCrashes = recentCrashes.filter { now - $0 < Self.crashWindowSeconds }
        recentCrashes.append(now)
        if recentCrashes.count >= Self.maxCrashesInWindow {
            return .giveUp(reason: "it crashed \(recentCrashes.count) times within \(Int(Self.crashWindowSeconds)) s")
        }
        let decision = Decision.restart(afterSeconds: delay)
        delay = min(delay * 2, Self.maxDelay)
        return decision
    }

    /// Forgets the crash history (after a manual restart).
    mutating func reset() {
        delay = Self.initialDelay
        recentCrashes = []
    }
}
