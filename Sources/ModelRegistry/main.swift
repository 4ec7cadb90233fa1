import Shared

ServiceMain.run(.registry, summary: "owns the configuration files and the list of models") { context in
    [try RegistryService(context: context)]
}
