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

    /// Resolves a requested name: id, alias, display name, or an Ollama-style `name:tag` (`:latest`
    /// accepted); an empty name means the default model.
    func resolve(_ requested: String?) -> ResolvedModel? {
        let snap = current
        guard let name = requested?.trimmingSpaces(), !name.isEmpty else {
            return snap.defaultModel.flatMap { d in snap.models.first { $0.id == d } }
        }
        let candidates = [String(name), name.hasSuffix(":latest") ? String(name.dropLast(7)) : nil].compactMap { $0 }
        for n in candidates {
            if let m = snap.models.first(where: { $0.id == n }) ?? snap.models.first(where: { $0.aliases.contains(n) })
                ?? snap.models.first(where: { $0.displayName == n }) ?? snap.models.first(where: { $0.id.lowercased() == n.lowercased() }) {
                return m
            }
        }
        return nil
    }

    /// Ids a user can ask for (listed models only), for "not found" messages.
    var availableNames: [String] { current.models.filter { !$0.unlisted }.map(\.id) }
}
