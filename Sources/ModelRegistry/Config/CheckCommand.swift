import Glibc
import Shared

/// `model-registry --check`: validates both config files, reads every model file's metadata and looks
/// for every runtime, printing one line per check (`ok`, `warn` or `fail` first). Exit 0, or 1 when
/// something failed. `launcher check` and `launcher up` run it.
enum CheckCommand {
    static func run(configDir: String) async -> Int32 {
        var failed = false
        func line(_ level: String, _ text: String) {
            print("\(level.padding(toLength: 5)) \(text)")
            if level == "fail" { failed = true }
        }
        let store: RegistryStore
        do {
            store = try RegistryStore(configDir: configDir, logger: Logger(service: "check", level: .error, toStderr: false)) { _ in }
        } catch {
            for fault in error.description.split(separator: "\n") { line("fail", String(fault)) }
            return 1
        }
        let status = await store.status()
        for file in status.files {
            line("ok", "\(file.name): \(file.state == .default ? "absent, built-in defaults in force" : "valid")")
            for w in file.warnings { line("warn", w) }
        }
        let app = await store.appConfig
        for (name, runtime) in app.runtimes.sorted(by: { $0.key < $1.key }) {
            guard let path = RuntimeLocator.locate(runtime.path.contains("/") ? resolvePath(runtime.path, configDir: configDir) : runtime.path) else {
                line(runtime.kind == .llamaServer ? "fail" : "warn", "runtime \(name): \(runtime.path) not found (run scripts/bootstrap.sh, or set its path in app_config.json)")
                continue
            }
            if runtime.kind == .whisperServer {
                // whisper-server has no --version; its --help names the flag runners depend on.
                let help = runVersion(path, argument: "--help", marker: "--inference-path")
                line(help == nil ? "fail" : "ok", "runtime \(name): \(path)" + (help == nil ? " does not run (--help failed or lacks --inference-path)" : " (whisper.cpp server)"))
                continue
            }
            let version = runVersion(path)
            line(version == nil ? "fail" : "ok", "runtime \(name): \(path)" + (version.map { " (\($0))" } ?? " does not run (--version failed)"))
        }
        for model in await store.snapshot().models {
            switch model.state {
            case .available where model.runtimeKind == .whisperServer:
                line("ok", "model \(model.id): \(model.path) (whisper.cpp ggml, \((FileStamp.of(model.path)?.size ?? 0) / (1 << 20)) MiB)")
            case .available:
                let m = model.metadata
                line("ok", "model \(model.id): \(model.path)" + (m.map { " (\($0.architecture ?? "?"), \($0.quantization ?? "?"), \($0.fileSize / (1 << 20)) MiB)" } ?? ""))
            case .missing: line("warn", "model \(model.id): no file at \(model.path)")
            default: line("fail", "model \(model.id): \(model.error ?? "unreadable")")
            }
        }
        return failed ? 1 : 0
    }

    /// The first line of `<binary> --version` that mentions `marker`, or nil if it does not run
    /// (or, with another argument, prints no such line).
    static func runVersion(_ path: String, argument: String = "--version", marker: String = "version") -> String? {
        var template = Array("/tmp/lr-version-XXXXXX".utf8CString)
        let fd = mkstemp(&template)
        guard fd >= 0 else { return nil }
        close(fd)
        let out = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        defer { unlink(out) }
        guard let child = try? ChildProcess.spawn(path, arguments: [argument], output: .file(out)) else { return nil }
        let until = deadline(after: 10)
        while child.isRunning && monotonicNanos() < until { usleep(10_000) }
        if child.isRunning { child.signal(SIGKILL) }
        guard child.exitStatus == .exited(0) || child.exitStatus == .exited(1) else { return nil }
        let text = readFile(out) ?? ""
        let found = text.split(separator: "\n").first { $0.containsText(marker) }.map { String($0).trimmingCharacters(in: " ") }
        return argument == "--version" ? found ?? "runs" : found
    }
}
