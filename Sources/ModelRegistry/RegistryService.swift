import Shared

/// The registry as a service: loads and validates both config files at start (an invalid file stops
/// the service with exit code 78 and every fault, which the launcher shows instead of retrying),
/// serves the `registry.*` methods, watches the files for hand edits (every second), runs discovery
/// at start and every `discovery_interval_seconds`, pulls models from the hub (`PullManager`), and
/// pushes `registry.changed` on every new revision and `registry.pullProgress` as pulls go.
final class RegistryService: Service {
    let context: ServiceContext
    let store: RegistryStore
    let pulls: PullManager
    /// Seconds between hand-edit checks.
    static let watchInterval = 1.0

    init(context: ServiceContext) throws {
        self.context = context
        let rpc = context.rpc
        let logger = context.logger
        store = try RegistryStore(configDir: context.paths.configDir, logger: logger, cacheFile: MetadataCacheFile(paths: context.paths)) { revision in
            logger.info("configuration changed", ("revision", revision))
            rpc.notify(RegistryRPC.Changed.self, Revision(revision: revision))
        }
        pulls = PullManager(store: store, loop: context.loop) { status in rpc.notify(RegistryRPC.PullProgress.self, status) }
    }

    var name: String { "registry" }

    func start() async throws {
        let store = self.store
        let rpc = context.rpc
        rpc.register(RegistryRPC.AppConfigGet.self) { _ in store.publishedAppConfig }
        rpc.register(RegistryRPC.Snapshot.self) { _ in await store.snapshot() }
        rpc.register(RegistryRPC.Status.self) { _ in store.publishedStatus }
        rpc.register(RegistryRPC.Discover.self) { _ in await store.discover() }
        rpc.register(RegistryRPC.UpdateModel.self) { try await store.updateModel($0) }
        rpc.register(RegistryRPC.RemoveModel.self) { try await store.removeModel($0) }
        rpc.register(RegistryRPC.SetDefaultModel.self) { try await store.setDefaultModel($0) }
        rpc.register(RegistryRPC.UpdateDefaultParameters.self) { try await store.updateDefaultParameters($0) }
        rpc.register(RegistryRPC.UpdateApp.self) { try await store.updateApp($0) }
        rpc.register(RegistryRPC.Documents.self) { _ in store.publishedDocuments }
        rpc.register(RegistryRPC.Schema.self) { params in
            guard let text = SchemaCommand.schema(params.file) else { throw RPCFault.invalidParams("no schema for \(params.file): app or models") }
            return try JSONParser.parse(text)
        }
        rpc.register(RegistryRPC.Backups.self) { _ in await store.backups() }
        rpc.register(RegistryRPC.Restore.self) { try await store.restore($0) }
        rpc.register(RegistryRPC.Backup.self) { try await store.backup($0.name) }
        rpc.register(RegistryRPC.ModelInfo.self) { try await store.modelInfo($0.model) }
        rpc.register(RegistryRPC.CreateModel.self) { try await store.createModel($0) }
        rpc.register(RegistryRPC.CopyModel.self) { try await store.copyModel($0) }
        rpc.register(RegistryRPC.DeleteModel.self) { try await store.deleteModel($0.model) }
        let pulls = self.pulls
        rpc.register(RegistryRPC.Pull.self) { try await pulls.pull($0) }
        rpc.register(RegistryRPC.PullStatusGet.self) { try await pulls.status($0.job) }
        rpc.register(RegistryRPC.Pulls.self) { _ in await pulls.list() }
        rpc.register(RegistryRPC.CancelPull.self) { try await pulls.cancel($0.job) }

        let report = await store.discover()
        context.logger.info("models", ("count", await store.status().modelCount), ("added", report.added.count),
                            ("missing", report.missing.count), ("revision", report.revision))
        watch()
        scheduleDiscovery()
    }

    func stop() async {}

    private func watch() {
        let store = self.store
        let context = self.context
        context.periodic.every(Self.watchInterval) {
            await store.checkForHandEdits()
            let problems = await store.problems()
            if problems.isEmpty {
                context.setHealth(.ok)
            } else {
                context.setHealth(.degraded, detail: "ignoring an invalid hand edit: " + problems.joined(separator: "; "))
            }
        }
    }

    /// Every `discovery_interval_seconds`; when that is 0 (off), the setting is looked at again every
    /// 30 s, in case a hand edit turns it on.
    private func scheduleDiscovery() {
        let store = self.store
        context.periodic.every(interval: {
            let interval = store.publishedAppConfig.discoveryIntervalSeconds
            return interval > 0 ? Double(interval) : 30
        }) {
            if store.publishedAppConfig.discoveryIntervalSeconds > 0 { _ = await store.discover() }
        }
    }
}
