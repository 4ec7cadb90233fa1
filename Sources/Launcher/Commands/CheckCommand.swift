import Glibc
import Shared

/// `launcher check` (the original project's validate_system): configuration, runtimes and models (via
/// `model-registry --check`), ports, directories, disk and memory — one line per check, a summary, exit
/// 0 or 1. `launcher up` runs the fatal subset (ports and directories) first and refuses to start on a
/// failure; configuration faults stop model-registry at its start with exit 78.
enum CheckCommand {
    struct Result {
        var lines: [(level: String, text: String)] = []
        var failed: Bool { lines.contains { $0.level == "fail" } }
        mutating func add(_ level: String, _ text: String) { lines.append((level, text)) }
    }

    static func run(_ options: ServiceOptions) async -> Int32 {
        var result = Result()
        // Configuration, runtimes, models.
        let out = "/tmp/lr-check-\(getpid()).out"
        defer { unlink(out) }
        if let child = try? ChildProcess.spawn(executableDirectory() + "/model-registry",
                                               arguments: ["--check", "--config-dir", options.paths.configDir], output: .file(out)) {
            let status = await child.wait()
            for line in (readFile(out) ?? "").split(separator: "\n") {
                let level = String(line.prefix(5)).trimmingCharacters(in: " ")
                result.add(level, String(line.dropFirst(6)))
            }
            if status != .exited(0) && !result.failed { result.add("fail", "model-registry --check \(status)") }
        } else {
            result.add("fail", "\(executableDirectory())/model-registry not found: build first (swift build)")
        }
        fatal(options, into: &result)
        resources(options, into: &result)
        for (level, text) in result.lines { print("\(level.padding(toLength: 6))\(text)") }
        let counts = ["ok", "warn", "fail"].map { l in result.lines.filter { $0.level == l }.count }
        print("\(result.lines.count) checks: \(counts[0]) ok, \(counts[1]) warnings, \(counts[2]) failed")
        return result.failed ? ExitCode.failure : ExitCode.ok
    }

    /// The checks that stop `launcher up`: ports free (or held by this Llama Runner, or handed down by
    /// socket activation: `handedDown`) and directories usable.
    static func fatal(_ options: ServiceOptions, handedDown: Set<UInt16> = [], into result: inout Result) {
        let running = Sockets.isUnixSocketLive(options.paths.launcherSocket)
        let config = (try? AppConfig.load(configDir: options.paths.configDir)) ?? AppConfig()
        for p in config.publicPorts {
            let (key, host, port) = (p.key, p.host, p.port)
            if handedDown.contains(port) {
                result.add("ok", "\(key): \(host):\(port) is handed down (socket activation)")
                continue
            }
            do {
                let l = try Listener(.tcp(host: host, port: port), loop: .shared)
                l.close()
                result.add("ok", "\(key): \(host):\(port) is free")
            } catch SocketError.addressInUse {
                if running {
                    result.add("ok", "\(key): \(host):\(port) is held by this Llama Runner")
                } else {
                    result.add("fail", "app_config.json: \(key): \(host):\(port) is already in use by another process; stop that process or choose another port")
                }
            } catch {
                result.add("fail", "app_config.json: \(key): \(host):\(port) cannot be opened: \(error)")
            }
        }
        do {
            try options.paths.prepare()
            let probe = options.paths.stateDir + "/.write-test-\(getpid())"
            try AtomicFile.write(Array("ok".utf8), to: probe)
            unlink(probe)
            var st = stat()
            stat(options.paths.runDir, &st)
            if st.st_mode & 0o077 != 0 {
                result.add("fail", "\(options.paths.runDir) is readable by others (mode \(String(st.st_mode & 0o777, radix: 8))); chmod 700 it")
            } else {
                result.add("ok", "state directory \(options.paths.stateDir) is writable; run/ is private (0700)")
            }
        } catch {
            result.add("fail", "state directory \(options.paths.stateDir) is not usable: \(error)")
        }
    }

    /// Disk and memory against the memory budget: warnings, never failures.
    static func resources(_ options: ServiceOptions, into result: inout Result) {
        var fs = statvfs()
        if statvfs(options.paths.stateDir, &fs) == 0 {
            let free = Int(fs.f_bavail) * Int(fs.f_frsize)
            result.add(free < 1 << 30 ? "warn" : "ok", "disk: \(free >> 20) MiB free for \(options.paths.stateDir)")
        }
        let meminfo = readFile("/proc/meminfo") ?? ""
        func kb(_ key: String) -> Int {
            meminfo.split(separator: "\n").first { $0.hasPrefix(key) }.flatMap { Int($0.split(separator: " ").dropFirst().first ?? "") } ?? 0
        }
        let total = kb("MemTotal:") * 1024, available = kb("MemAvailable:") * 1024
        let config = (try? AppConfig.load(configDir: options.paths.configDir)) ?? AppConfig()
        var budget = total * 8 / 10
        if let bytes = config.limits.memoryBudget.intValue { budget = bytes }
        if let text = config.limits.memoryBudget.stringValue, text.hasSuffix("%"), let pct = Double(text.dropLast()) { budget = Int(Double(total) * pct / 100) }
        result.add(budget > available ? "warn" : "ok",
                   "memory: budget \(budget >> 20) MiB, \(available >> 20) MiB available of \(total >> 20) MiB" + (budget > available ? " (models may not fit)" : ""))
    }
}

/// `launcher clean`: removes what a crash can leave behind — stale sockets, records of runners that are
/// gone, rotated logs beyond retention — and the metadata cache's entries of model files that no longer
/// exist; nothing else.
enum CleanCommand {
    static func run(_ options: ServiceOptions) -> Int32 {
        let paths = options.paths
        var removed: [String] = []
        for name in listDirectory(paths.runDir) ?? [] where name.hasSuffix(".sock") {
            let path = paths.runDir + "/" + name
            if !Sockets.isUnixSocketLive(path) && unlink(path) == 0 { removed.append(path) }
        }
        let records = RunnerRecord.load(paths)
        let alive = records.filter { $0.process.isAlive }
        if alive.count != records.count {
            try? RunnerRecord.save(alive, paths)
            removed.append("\(records.count - alive.count) record(s) of runners that are gone from \(RunnerRecord.path(paths))")
        }
        for dir in [paths.logsDir, paths.logsDir + "/runners"] {
            for name in listDirectory(dir) ?? [] {
                guard let dot = name.lastIndex(of: "."), let n = Int(name[name.index(after: dot)...]), name[..<dot].hasSuffix(".log"), n > 5 else { continue }
                if unlink(dir + "/" + name) == 0 { removed.append(dir + "/" + name) }
            }
        }
        let cache = MetadataCacheFile(paths: paths)
        do {
            let gone = try cache.prune()
            if !gone.isEmpty { removed.append("\(gone.count) metadata cache entr\(gone.count == 1 ? "y" : "ies") of files that no longer exist from \(cache.path)") }
        } catch {
            print("cannot prune \(cache.path): \(error)")
        }
        for r in removed { print("removed \(r)") }
        print(removed.isEmpty ? "nothing to clean" : "\(removed.count) item(s) removed")
        return ExitCode.ok
    }
}
