import Glibc

/// Finds a runtime binary (llama-server, whisper-server): a path as configured; else
/// `LLAMA_RUNNER_LLAMA_SERVER` / `LLAMA_RUNNER_WHISPER_SERVER`; else on PATH; else the project's own
/// install (`<repo>/.venv-llama/bin/` or `<repo>/.venv-whisper/bin/`, made by scripts/bootstrap.sh),
/// found by walking up from the running executable's folder. Used by runner-manager to spawn and by
/// `launcher check` to report.
public enum RuntimeLocator {
    static let overrides = ["llama-server": "LLAMA_RUNNER_LLAMA_SERVER", "whisper-server": "LLAMA_RUNNER_WHISPER_SERVER"]

    public static func locate(_ runtime: String) -> String? {
        if runtime.contains("/") { return access(runtime, X_OK) == 0 ? runtime : nil }
        if let variable = overrides[runtime], let installed = ProcessEnvironment.get(variable), access(installed, X_OK) == 0 {
            return installed
        }
        for dir in (ProcessEnvironment.get("PATH") ?? "/usr/local/bin:/usr/bin:/bin").split(separator: ":") {
            let candidate = "\(dir)/\(runtime)"
            if access(candidate, X_OK) == 0 { return candidate }
        }
        var dir = executableDirectory()
        for _ in 0..<5 {
            for venv in [".venv-llama", ".venv-whisper"] {
                let candidate = "\(dir)/\(venv)/bin/\(runtime)"
                if access(candidate, X_OK) == 0 { return candidate }
            }
            guard let slash = dir.lastIndex(of: "/"), slash != dir.startIndex else { break }
            dir = String(dir[..<slash])
        }
        return nil
    }
}
