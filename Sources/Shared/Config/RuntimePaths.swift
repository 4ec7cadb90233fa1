import Glibc

/// The directories every service works in, resolved to absolute paths. Nothing is written outside
/// the state and config directories.
public struct RuntimePaths: Sendable, Equatable {
    /// Holds `logs/` and `run/`.
    public let stateDir: String
    /// Holds `app_config.json`, `models_config.json` and `backups/`.
    public let configDir: String

    public init(stateDir: String, configDir: String) {
        self.stateDir = absolutePath(stateDir)
        self.configDir = absolutePath(configDir)
    }

    /// `<state>/run`: sockets and runner records (mode 0700).
    public var runDir: String { stateDir + "/run" }
    /// `<state>/logs`: rotated service logs.
    public var logsDir: String { stateDir + "/logs" }
    /// The control socket of a service.
    public func socket(_ service: ServiceName) -> String { runDir + "/" + service.socketName }
    /// The launcher's control socket.
    public var launcherSocket: String { runDir + "/launcher.sock" }
    /// A service's own log file.
    public func log(_ name: String) -> String { logsDir + "/\(name).log" }
    /// Where a supervised service's stdout/stderr go (crash traces, anything not logged).
    public func consoleLog(_ name: String) -> String { logsDir + "/\(name).stderr.log" }

    /// Creates the state, run (0700) and logs directories.
    public func prepare() throws {
        try makeDirectories(stateDir, mode: 0o755)
        try makeDirectories(logsDir, mode: 0o755)
        try makeDirectories(runDir, mode: 0o700)
        chmod(runDir, 0o700)
    }
}

/// Errors of preparing directories.
public struct PathError: Error, CustomStringConvertible, Sendable {
    public let path: String
    public let reason: String
    public var description: String { "\(path): \(reason)" }
}

/// `mkdir -p`.
public func makeDirectories(_ path: String, mode: mode_t = 0o755) throws {
    var current = path.hasPrefix("/") ? "" : "."
    for part in path.split(separator: "/") {
        current += "/" + part
        if mkdir(current, mode) != 0 && errno != EEXIST {
            throw PathError(path: current, reason: String(cString: strerror(errno)))
        }
    }
    var st = stat()
    guard stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else {
        throw PathError(path: path, reason: "exists and is not a directory")
    }
}

/// Resolves a config path against the config directory.
public func resolvePath(_ path: String, configDir: String) -> String {
    path.hasPrefix("/") ? absolutePath(path) : absolutePath(configDir + "/" + path)
}

/// Makes a path absolute against the working directory and removes `.`/`..` segments.
public func absolutePath(_ path: String) -> String {
    var full = path
    if !path.hasPrefix("/") {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let cwd = getcwd(&buffer, buffer.count).map { String(cString: $0) } ?? "/"
        full = cwd + "/" + path
    }
    var parts: [Substring] = []
    for part in full.split(separator: "/") {
        if part == "." || part.isEmpty { continue }
        if part == ".." { _ = parts.popLast() } else { parts.append(part) }
    }
    return "/" + parts.joined(separator: "/")
}

/// The directory containing the running executable (`/proc/self/exe`).
public func executableDirectory() -> String {
    var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
    let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
    guard n > 0 else { return "." }
    let path = String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    return String(path[..<(path.lastIndex(of: "/") ?? path.endIndex)])
}
