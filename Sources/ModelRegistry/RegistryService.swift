import Shared

/// The registry's core: loads `app_config.json` at start (an invalid file stops the service with
/// exit code 78 and the file's fault, which the launcher shows instead of retrying) and serves it.
/// Model discovery, validation and edits arrive with issue 4.
final class RegistryService: Service {
    let context: ServiceContext
    let appConfig: AppConfig

    init(context: ServiceContext) throws {
        self.context = context
        appConfig = try AppConfig.load(configDir: context.paths.configDir)
    }

    var name: String { "registry" }

    func start() async throws {
        let config = appConfig
        context.rpc.register(RegistryRPC.AppConfigGet.self) { _ in config }
    }

    func stop() async {}
}
