import Shared

/// Which host a request for a model goes to, as a pure function of what the heartbeats last said.
/// In order: a host where the model's runner is ready (the least busy first); one where it is loading
/// (the request joins that load); then every host that has the model's file, the most free memory
/// first (runner-manager there evicts by its usual rules when even that is not enough). Hosts that are
/// down are never chosen; the caller tries the next one when a host fails on the way.
enum HostPlacement {
    /// One host as placement sees it.
    struct View: Sendable, Equatable {
        var name: String
        var up: Bool
        /// Its registry has the model's file.
        var hasModel: Bool
        var runner: RunnerPhase?
        /// Active leases and queued requests on its runner for the model.
        var busy: Int
        /// Free bytes on the device models go to (`HostInfo.freeBytes`).
        var freeBytes: Int
    }

    static func order(_ hosts: [View]) -> [String] {
        let up = hosts.filter { $0.up && $0.hasModel }
        let ready = up.filter { $0.runner == .ready }.sorted { ($0.busy, $0.name) < ($1.busy, $1.name) }
        let loading = up.filter { $0.runner == .loading || $0.runner == .starting }.sorted { $0.name < $1.name }
        let taken = Set((ready + loading).map(\.name))
        let rest = up.filter { !taken.contains($0.name) }.sorted { ($0.freeBytes, $1.name) > ($1.freeBytes, $0.name) }
        return (ready + loading + rest).map(\.name)
    }
}
