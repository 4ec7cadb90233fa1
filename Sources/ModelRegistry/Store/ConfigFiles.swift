import Glibc
import Shared

/// The two config files on disk and their backups: reading, atomic writing with a timestamped
/// backup first, listing and pruning backups.
struct ConfigFiles: Sendable {
    static let appName = "app_config.json"
    static let modelsName = "models_config.json"
    /// Backups kept per file.
    static let keepBackups = 20

    let configDir: String
    var backupsDir: String { configDir + "/backups" }
    func path(_ name: String) -> String { configDir + "/" + name }

    /// Reads and parses a file: nil when absent, the document and parse warnings, or a syntax error.
    func read(_ name: String) -> Result<(JSONValue, [String])?, ConfigIssue> {
        guard let bytes = readFileBytes(path(name)) else {
            if access(path(name), F_OK) == 0 {
                return .failure(ConfigIssue(file: name, path: "", message: "cannot be read: \(String(cString: strerror(errno)))", severity: .error))
            }
            return .success(nil)
        }
        do {
            let (value, warnings) = try JSONParser.parse(bytes, lenientEscapes: true)
            return .success((value, warnings))
        } catch {
            return .failure(ConfigIssue(file: name, path: "", message: "invalid JSON: \(error)", severity: .error))
        }
    }

    /// Backs up the current file (if any), then replaces it atomically with `document`.
    func write(_ name: String, _ document: JSONValue) throws {
        try backup(name)
        try AtomicFile.write(JSONWriter.bytes(document, pretty: true), to: path(name))
    }

    /// Copies the current file to `backups/<stem>-<UTC timestamp>.json` and prunes old backups.
    func backup(_ name: String) throws {
        guard let bytes = readFileBytes(path(name)) else { return }
        try makeDirectories(backupsDir)
        let stem = String(name.dropLast(5))
        let stamp = Logger.timestamp().filter { $0 != "-" && $0 != ":" }
        var target = "\(backupsDir)/\(stem)-\(stamp).json"
        var n = 2
        while access(target, F_OK) == 0 {
            target = "\(backupsDir)/\(stem)-\(stamp)-\(n).json"
            n += 1
        }
        try AtomicFile.write(bytes, to: target)
        for old in backups().filter({ $0.file == name }).dropFirst(Self.keepBackups) {
            unlink("\(backupsDir)/\(old.name)")
        }
    }

    /// Backups, newest first.
    func backups() -> [BackupInfo] {
        var result: [BackupInfo] = []
        for name in listDirectory(backupsDir) ?? [] {
            guard let info = Self.parseBackupName(name) else { continue }
            var st = stat()
            stat("\(backupsDir)/\(name)", &st)
            result.append(BackupInfo(name: name, file: info.file, createdAt: info.createdAt, bytes: Int(st.st_size)))
        }
        return result.sorted { ($0.createdAt, $0.name) > ($1.createdAt, $1.name) }
    }

    /// `models_config-20261125T021432.123Z.json` → file and ISO time; nil for anything else (which
    /// also keeps `registry.restore` from reading outside `backups/`).
    static func parseBackupName(_ name: String) -> (file: String, createdAt: String)? {
        for stem in ["app_config", "models_config"] where name.hasPrefix(stem + "-") && name.hasSuffix(".json") {
            let stamp = name.dropFirst(stem.count + 1).dropLast(5).split(separator: "-").first.map(String.init) ?? ""
            let chars = Array(stamp)
            guard chars.count == 20, chars[8] == "T", chars[15] == ".", chars[19] == "Z",
                  !name.contains("/") else { return nil }
            let iso = "\(String(chars[0..<4]))-\(String(chars[4..<6]))-\(String(chars[6..<8]))T\(String(chars[9..<11])):\(String(chars[11..<13])):\(String(chars[13..<15]))\(String(chars[15...]))"
            return (stem + ".json", iso)
        }
        return nil
    }
}
