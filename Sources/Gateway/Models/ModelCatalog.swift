import Shared
import Synchronization

/// The gateway's copy of the registry's model table, refreshed on `registry.changed` (and on
/// reconnect), so routing a request costs no RPC, with the peers' models (`<peer>/<model>`) after the
/// local ones. When the registry is down, the last snapshot keeps serving.
final class ModelCatalog: Sendable {
    /// The registry's table, and that table with the peers' models appended (what `current` is);
    /// both carry the registry's revision, which runner-manager compares with its own.
    private let snapshot = Mutex((local: RegistrySnapshot(revision: "", defaultModel: nil, models: []),
                                  merged: RegistrySnapshot(revision: "", defaultModel: nil, models: [])))
    /// The peers of `app_config.json`, configured at each refresh.
    let peers = PeerDirectory()
    /// Models only other hosts (`hosts`) have, from their registries.
    private let hostModels = Mutex<[ResolvedModel]>([])
    private let appConfigListener = Mutex<(@Sendable (AppConfig) -> Void)?>(nil)
    let registry: RPCClient
    let loop: EventLoop
    /// Told the new revision after each refresh that changed it (the dashboard's event stream).
    let onChange: @Sendable (String) -> Void

    init(registry: RPCClient, loop: EventLoop, onChange: @escaping @Sendable (String) -> Void = { _ in }) {
        self.registry = registry
        self.loop = loop
        self.onChange = onChange
    }

    /// Told of the app config each time it is read (every registry change): what else follows it (`hosts`).
    func onAppConfig(_ body: @escaping @Sendable (AppConfig) -> Void) { appConfigListener.withLock { $0 = body } }

    /// Subscribes to changes and loads the first snapshot.
    func start() async {
        peers.onChange { [self] in remerge() }
        registry.onNotification { [self] method, _ in
            if method == RegistryRPC.Changed.name { Task(executorPreference: loop) { await self.refresh() } }
        }
        registry.onConnect { [self] in Task(executorPreference: loop) { await self.refresh() } }
        registry.subscribe()
        await refresh()
    }

    func refresh() async {
        if let app = try? await registry.call(RegistryRPC.AppConfigGet.self, Empty(), timeout: 10) {
            peers.configure(app.peers)
            appConfigListener.withLock { $0 }?(app)
        }
        if let fresh = try? await registry.call(RegistryRPC.Snapshot.self, Empty(), timeout: 10) {
            let others = hostModels.withLock { $0 } + peers.models
            let changed = snapshot.withLock { s -> Bool in
                defer { s = (fresh, Self.merge(fresh, others)) }
                return s.local.revision != fresh.revision
            }
            if changed { onChange(fresh.revision) }
        }
    }

    /// Takes the models only other hosts have (after a heartbeat brought a host's new table).
    func setHostModels(_ models: [ResolvedModel]) {
        let changed = hostModels.withLock { old -> Bool in
            defer { old = models }
            return old != models
        }
        if changed { remerge() }
    }

    private func remerge() {
        let others = hostModels.withLock { $0 } + peers.models
        let revision = snapshot.withLock { s in
            s.merged = Self.merge(s.local, others)
            return s.local.revision
        }
        onChange(revision)
    }

    /// The local table with other hosts' and then the peers' entries after it (the first of an id wins:
    /// a local model over a host's or a peer's of the same name).
    static func merge(_ local: RegistrySnapshot, _ others: [ResolvedModel]) -> RegistrySnapshot {
        guard !others.isEmpty else { return local }
        var merged = local
        var ids = Set(local.models.map(\.id))
        for m in others where ids.insert(m.id).inserted { merged.models.append(m) }
        return merged
    }

    var current: RegistrySnapshot { snapshot.withLock { $0.merged } }

    /// Resolves a requested name as every service does (`RegistrySnapshot.resolve`); a `<peer>/<model>`
    /// of a peer that is not up resolves even when its last list lacked it (to answer with its state).
    func resolve(_ requested: String?) -> ResolvedModel? {
        current.resolve(requested) ?? requested.flatMap(peers.placeholder)
    }

    /// Ids a user can ask for (listed models only), for "not found" messages.
    var availableNames: [String] { current.models.filter { !$0.unlisted }.map(\.id) }
}
