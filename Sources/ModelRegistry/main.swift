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

// `model-registry --check`: validate the configuration, the models and the runtimes, then exit.
if CommandLine.arguments.contains("--check") {
    let args = CommandLine.arguments.dropFirst().filter { $0 != "--check" }
    let options = (try? ServiceOptions.parse(Array(args), service: "model-registry")) ?? (try! ServiceOptions.parse([], environment: [:]))
    let code = await CheckCommand.run(configDir: options.paths.configDir)
    fflush(nil)
    exit(code)
}

ServiceMain.run(.registry, summary: "owns the configuration files and the list of models (also: --check, --print-schema app|models)") { context in
    [try RegistryService(context: context)]
}
