import Testing
@testable import Launcher

@Suite struct RestartPolicyTests {
    @Test func delayDoublesFrom100msAndIsCappedAt5s() {
        var policy = RestartPolicy()
        var delays: [Double] = []
        // Crashes 20 s apart never reach five within a minute.
        for i in 0..<8 {
            if case .restart(let d) = policy.crashed(at: Double(i) * 20, healthySince: nil, exitCode: 1) { delays.append(d) }
        }
        #expect(delays == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0])
    }

    @Test func sixtySecondsOfHealthResetTheDelay() {
        var policy = RestartPolicy()
        _ = policy.crashed(at: 0, healthySince: nil, exitCode: 1)
        _ = policy.crashed(at: 1, healthySince: nil, exitCode: 1)
        #expect(policy.crashed(at: 100, healthySince: 30, exitCode: 1) == .restart(afterSeconds: 0.1))
        #expect(policy.crashed(at: 200, healthySince: 190, exitCode: 1) == .restart(afterSeconds: 0.2))
    }

    @Test func fiveCrashesWithinAMinuteGiveUp() {
        var policy = RestartPolicy()
        for t in 0..<4 {
            guard case .restart = policy.crashed(at: Double(t), healthySince: nil, exitCode: nil) else {
                Issue.record("crash \(t) should restart")
                return
            }
        }
        guard case .giveUp(let reason) = policy.crashed(at: 4, healthySince: nil, exitCode: nil) else {
            Issue.record("the fifth crash within 60 s must give up")
            return
        }
        #expect(reason.contains("5 times"))
        policy.reset()
        #expect(policy.crashed(at: 5, healthySince: nil, exitCode: 1) == .restart(afterSeconds: 0.1))
    }

    @Test func aConfigurationErrorIsNeverRetried() {
        var policy = RestartPolicy()
        guard case .giveUp(let reason) = policy.crashed(at: 0, healthySince: nil, exitCode: 78) else {
            Issue.record("exit 78 must give up")
            return
        }
        #expect(reason.contains("configuration"))
    }
}
