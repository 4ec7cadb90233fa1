import Shared

/// Renders the JSON Schemas of the two config files from the validator's shapes.
enum SchemaCommand {
    static func schema(_ which: String) -> String? {
        switch which {
        case "app":
            JSONWriter.write(ConfigShapes.schema(ConfigShapes.app, title: "Llama Runner app_config.json",
                                                 id: "https://llama-runner.local/schema/app_config.schema.json"), pretty: true)
        case "models":
            JSONWriter.write(ConfigShapes.schema(ConfigShapes.models, title: "Llama Runner models_config.json",
                                                 id: "https://llama-runner.local/schema/models_config.schema.json"), pretty: true)
        default:
            nil
        }
    }
}
