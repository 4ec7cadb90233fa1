import Shared
import Synchronization

/// The gateway's copy of the registry's model table, refreshed on `registry.changed` (and on
/// reconnect), so routing a request costs no RPC. When the registry is down, the last snapshot keeps
/// serving.
final class ModelCatalog: Sendable {
    private let snapshot = Mutex(RegistrySnapshot(revision: "", defaultModel: nil, models: []))
    let registry: RPCClient
    let loop: EventLoop
    /// Told the new revision after each refresh that changed it (the dashboard's event stream).
    let onChange: @Sendable (String) -> Void

    init(registry: RPCClient, loop: EventLoop, onChange: @escaping @Sendable (String) -> Void = { _ in }) {
        self.registry = registry
        self.loop = loop
        self.onChange = onChange
    }

    /// Subscribes to changes and loads the first snapshot.
    func start() async {
        registry.onNotification { [self] method, _ in
            if method == RegistryRPC.Changed.name { Task(executorPreference: loop) { await self.refresh() } }
        }
        registry.onConnect { [self] in Task(executorPreference: loop) { await self.refresh() } }
        registry.subscribe()
        await refresh()
    }

    func refresh() async {
        if let fresh = try? await registry.call(RegistryRPC.Snapshot.self, Empty(), timeout: 10) {
            let changed = snapshot.withLock { s -> Bool in
                defer { s = fresh }
                return s.revision != fresh.revision
            }
            if changed { onChange(fresh.revision) }
        }
    }

    var current: RegistrySnapshot { snapshot.withLock { $0 } }

    /// Resolves a requested name as every service does (`RegistrySnapshot.resolve`).
    func resolve(_ requested: String?) -> ResolvedModel? { current.resolve(requested) }

    /// Ids a user can ask for (listed models only), for "not found" messages.
    var availableNames: [String] { current.models.filter { !$0.unlisted }.map(\.id) }
}
