import Glibc
import Shared

// `model-registry --print-schema app|models` prints the JSON Schema the validator enforces
// (the files in config/schema/ are generated this way).
if let i = CommandLine.arguments.firstIndex(of: "--print-schema") {
    let which = i + 1 < CommandLine.arguments.count ? CommandLine.arguments[i + 1] : ""
    guard let text = SchemaCommand.schema(which) else {
        printError("model-registry --print-schema: expected app or models")
        exit(ExitCode.usage)
    }
    print(text, terminator: "")
    exit(ExitCode.ok)
}

ServiceMain.run(.registry, summary: "owns the configuration files and the list of models (also: --print-schema app|models)") { context in
    [try RegistryService(context: context)]
}
