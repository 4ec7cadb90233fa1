@testable import Gateway
import Shared
import Testing

/// Where a request goes among several hosts, from what their heartbeats said.
@Suite struct HostPlacementTests {
    typealias View = HostPlacement.View

    static func host(_ name: String, up: Bool = true, has: Bool = true, runner: RunnerPhase? = nil, busy: Int = 0, free: Int = 0) -> View {
        View(name: name, up: up, hasModel: has, runner: runner, busy: busy, freeBytes: free)
    }

    @Test func aLoadedRunnerWinsOverFreeMemoryAndTheLeastBusyFirst() {
        let order = HostPlacement.order([
            Self.host("a", free: 90), Self.host("b", runner: .ready, busy: 3, free: 1), Self.host("c", runner: .ready, busy: 1, free: 2),
        ])
        #expect(order == ["c", "b", "a"])
    }

    @Test func aLoadInProgressIsJoinedBeforeStartingAnother() {
        #expect(HostPlacement.order([Self.host("a", free: 90), Self.host("b", runner: .loading, free: 1)]) == ["b", "a"])
    }

    @Test func otherwiseTheMostFreeMemoryAmongHostsWithTheFile() {
        let order = HostPlacement.order([Self.host("a", free: 4), Self.host("b", free: 14), Self.host("c", has: false, free: 99),
                                         Self.host("d", free: 14)])
        #expect(order == ["b", "d", "a"])
    }

    @Test func downHostsAreNeverChosenEvenWithTheModelLoaded() {
        #expect(HostPlacement.order([Self.host("a", up: false, runner: .ready), Self.host("b", free: 1)]) == ["b"])
        #expect(HostPlacement.order([Self.host("a", up: false, runner: .ready)]).isEmpty)
        // A stopped or failed runner counts as not loaded.
        #expect(HostPlacement.order([Self.host("a", runner: .failed, free: 1), Self.host("b", free: 2)]) == ["b", "a"])
    }
}
