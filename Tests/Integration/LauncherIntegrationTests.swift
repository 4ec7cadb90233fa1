import Glibc
import Testing
@testable import Shared

/// The real executables under the real launcher. Serialized: each test runs a whole mesh, and the
/// machine has two cores.
@Suite(.serialized) struct LauncherIntegrationTests {
    @Test func upStartsEverythingHealthyAndSigintLeavesNothingBehind() async throws {
        try await Mesh.with { mesh in
            try await mesh.up()
            let pids = try await mesh.pids()
            #expect(pids.count == 4)
            #expect(mesh.launcherOutput.contains("Ollama API      http://127.0.0.1:\(mesh.ports.ollama)"))

            for port in [mesh.ports.ollama, mesh.ports.lmstudio, mesh.ports.api, mesh.ports.web] {
                let (code, body) = try await mesh.get(port, "/health")
                #expect(code == 200, "health on \(port): \(body)")
                for name in ServiceName.allCases { #expect(body.contains("\"\(name.rawValue)\"")) }
            }
            #expect(try await mesh.get(mesh.ports.ollama, "/") == (200, "Ollama is running"))
            #expect(try await mesh.get(mesh.ports.ollama, "/", method: "HEAD") == (200, ""))
            #expect(try await mesh.get(mesh.ports.ollama, "/api/version") == (200, "{\"version\":\"0.12.6\"}"))

            // `launcher status` from another process prints the table.
            let (statusExit, table) = try await mesh.run(["status"])
            #expect(statusExit == .exited(0))
            for name in ServiceName.allCases { #expect(table.contains(name.rawValue)) }
            #expect(table.components(separatedBy: "running").count - 1 == 4)

            let launcherPid = mesh.launcher!.pid
            #expect(try await mesh.interrupt() == .exited(0))
            for (name, pid) in pids { #expect(!processExists(pid), "\(name) (pid \(pid)) is still in /proc") }
            #expect(!processExists(launcherPid))
            #expect((listDirectory(mesh.paths.runDir) ?? []).filter { $0.hasSuffix(".sock") } == [])
        }
    }

    @Test func eachServiceKilledWithSigkillComesBackHealthy() async throws {
        try await Mesh.with { mesh in
            try await mesh.up()
            for name in ServiceName.startOrder {
                let before = try await mesh.pids()
                let victim = before[name.rawValue]!
                kill(victim, SIGKILL)
                try await waitUntil("\(name) back after kill -9", timeout: 30) {
                    guard let report = try? await mesh.status(),
                          let s = report.services.first(where: { $0.name == name.rawValue }) else { return false }
                    return s.state == .running && s.pid != nil && s.pid != victim
                }
                let after = try await mesh.pids()
                for other in ServiceName.startOrder where other != name {
                    #expect(after[other.rawValue] == before[other.rawValue], "\(other) must not be restarted when \(name) dies")
                }
                #expect(processState(victim) == nil, "the killed \(name) must be reaped, not left a zombie")
                try await waitUntil("gateway health 200 after \(name) restart", timeout: 30) {
                    (try? await mesh.get(mesh.ports.api, "/health").0) == 200
                }
            }
            let restarts = try await mesh.status().services.map(\.restarts)
            #expect(restarts == [1, 1, 1, 1])
            #expect(try await mesh.interrupt() == .exited(0))
        }
    }

    @Test func restartingTheGatewayLeavesTheOthersAndDownStopsEverything() async throws {
        try await Mesh.with { mesh in
            try await mesh.up()
            let before = try await mesh.pids()
            let (exit, output) = try await mesh.run(["restart", "gateway"])
            #expect(exit == .exited(0), "\(output)")
            #expect(output.contains("gateway restarted"))
            let after = try await mesh.pids()
            #expect(after["gateway"] != before["gateway"])
            for name in ["model-registry", "metrics-service", "runner-manager"] { #expect(after[name] == before[name]) }
            #expect(try await mesh.get(mesh.ports.ollama, "/api/version").0 == 200)

            // A name that is not a service is a usage error.
            let (bad, badOut) = try await mesh.run(["restart", "nonsense"])
            #expect(bad == .exited(64))
            #expect(badOut.contains("unknown service nonsense"))

            // `launcher down` from another terminal stops everything.
            let (downExit, downOut) = try await mesh.run(["down"])
            #expect(downExit == .exited(0), "\(downOut)")
            #expect(try await waitExit(mesh.launcher!, timeout: 30) == .exited(0))
            for (_, pid) in after { #expect(!processExists(pid)) }
        }
    }

    @Test func healthNamesTheServiceThatIsDown() async throws {
        try await Mesh.with { mesh in
            try await mesh.up()
            // Stop runner-manager behind the launcher's back with SIGSTOP: alive, but not answering.
            let pid = try await mesh.pids()["runner-manager"]!
            kill(pid, SIGSTOP)
            // Signal delivery is asynchronous: on a loaded machine the process may still answer once.
            try await waitUntil("runner-manager to be stopped", timeout: 10) { processState(pid) == "T" }
            let (code, body) = try await mesh.get(mesh.ports.api, "/health")
            kill(pid, SIGCONT)
            #expect(code == 503)
            #expect(body.contains("\"down\":[\"runner-manager\"]"))
            #expect(try await mesh.interrupt() == .exited(0))
        }
    }

    @Test func aSecondSignalWhileStoppingExitsAtOnceAndOrphansStopByThemselves() async throws {
        try await Mesh.with { mesh in
            try await mesh.up()
            let pids = try await mesh.pids()
            // A gateway that cannot stop holds the launcher in its graceful stop (gateway goes first).
            let gateway = pids["gateway"]!
            kill(gateway, SIGSTOP)
            try await waitUntil("gateway to be stopped", timeout: 10) { processState(gateway) == "T" }
            let launcher = mesh.launcher!
            launcher.signal(SIGINT, group: false)
            try await waitUntil("the launcher to start stopping", timeout: 10) { mesh.launcherOutput.contains("stopping reason=SIGINT") }
            launcher.signal(SIGINT, group: false)
            #expect(try await waitExit(launcher, timeout: 5) == .exited(1))
            #expect(mesh.launcherOutput.contains("second signal while stopping: exiting now"), "\(mesh.launcherOutput)")
            // The services see their launcher gone and stop; the gateway takes its pending SIGTERM once resumed.
            kill(gateway, SIGCONT)
            for (name, pid) in pids {
                try await waitUntil("\(name) to exit", timeout: 15) { !processExists(pid) }
            }
        }
    }

    @Test func aTakenPortStopsUpWithAMessageNamingThePortAndKey() async throws {
        try await Mesh.with { mesh in
            let squatter = try Listener(.tcp(host: "127.0.0.1", port: mesh.ports.lmstudio), loop: .shared)
            defer { squatter.close() }
            mesh.launcher = try ChildProcess.spawn(Mesh.binDir + "/launcher", arguments: ["up"] + mesh.arguments,
                                                   output: .file(mesh.dir + "/launcher.out"))
            let status = try await waitExit(mesh.launcher!, timeout: 60)
            #expect(status == .exited(1))
            let out = mesh.launcherOutput
            #expect(out.contains("proxies.lmstudio.port: 127.0.0.1:\(mesh.ports.lmstudio) is already in use"), "\(out)")
            #expect((listDirectory(mesh.paths.runDir) ?? []).filter { $0.hasSuffix(".sock") } == [])
        }
    }

    @Test func everyServiceExitsZeroWithinFiveSecondsOfSigterm() async throws {
        try await Mesh.with { mesh in
            try mesh.paths.prepare()
            var children: [(ServiceName, ChildProcess)] = []
            for name in ServiceName.startOrder {
                let child = try ChildProcess.spawn(Mesh.binDir + "/" + name.executable, arguments: mesh.arguments,
                                                   output: .file(mesh.paths.consoleLog(name.rawValue)))
                children.append((name, child))
                let client = RPCClient(path: mesh.paths.socket(name))
                client.start()
                let info = try await client.call(ServiceRPC.Health.self, Empty(), timeout: 30)
                #expect(info.pid == child.pid)
                #expect(info.service == name.rawValue)
                await client.close()
            }
            for (name, child) in children.reversed() {
                child.signal(SIGTERM, group: false)
                let status = try await waitExit(child, timeout: 5)
                #expect(status == .exited(0), "\(name) \(status)")
                #expect(access(mesh.paths.socket(name), F_OK) != 0, "\(name) must remove its socket")
            }
        }
    }

    @Test func aConfigErrorIsShownAndNeverRetried() async throws {
        try await Mesh.with { mesh in
            // At start: `up` fails with the registry's message instead of looping.
            let good = readFile(mesh.paths.configDir + "/app_config.json")!
            try writeText(mesh.paths.configDir + "/app_config.json", "{\"proxies\": {\"ollama\": {\"port\": \"eleven\"}}}")
            let (exit, _) = try await mesh.run(["up"])
            #expect(exit == .exited(1))
            let log = readFile(mesh.paths.log("launcher")) ?? ""
            #expect(log.contains("proxies.ollama.port: expected an integer"), "\(log)")

            // While running: a registry that restarts into a broken config is marked failed, with the
            // reason and its last log lines, and left alone.
            try writeText(mesh.paths.configDir + "/app_config.json", good)
            try await mesh.up()
            try writeText(mesh.paths.configDir + "/app_config.json", "{ not json")
            let victim = try await mesh.pids()["model-registry"]!
            kill(victim, SIGKILL)
            try await waitUntil("registry marked failed", timeout: 30) {
                (try? await mesh.status())?.services.first { $0.name == "model-registry" }?.state == .failed
            }
            let registry = try await mesh.status().services.first { $0.name == "model-registry" }!
            #expect(registry.message?.contains("configuration error") == true, "\(registry)")
            #expect(mesh.launcherOutput.contains("not restarting"))
            #expect(mesh.launcherOutput.contains("app_config.json"), "the log tail names the file")
            try await EventLoop.shared.sleep(seconds: 0.5)
            #expect(try await mesh.status().services.first { $0.name == "model-registry" }?.restarts == 1, "no retry loop")
            #expect(try await mesh.interrupt() == .exited(0))
        }
    }
}


@Suite(.serialized) struct LauncherMaintenanceTests {
    @Test func checkReportsEachProblemAndExitsOne() async throws {
        try await Mesh.with { mesh in
            let (ok, good) = try await mesh.run(["check"])
            #expect(ok == .exited(0), "\(good)")
            #expect(good.contains("checks:") && good.contains("0 failed"))
            try writeText(mesh.paths.configDir + "/models_config.json", #"{"models": {"m": {"model_path": "gone.gguf", "parameters": {"ctx_size": "16k"}}}}"#)
            let squatter = try Listener(.tcp(host: "127.0.0.1", port: mesh.ports.web), loop: .shared)
            defer { squatter.close() }
            let (bad, output) = try await mesh.run(["check"])
            #expect(bad == .exited(1))
            #expect(output.contains(#"fail  models_config.json: models.m.parameters.ctx_size: expected an integer, got "16k""#), "\(output)")
            #expect(output.contains("fail  app_config.json: dashboard.web_port: 127.0.0.1:\(mesh.ports.web) is already in use"), "\(output)")
            // up refuses on the same port fault, before starting anything.
            let (up, upOutput) = try await mesh.run(["up"])
            #expect(up == .exited(1))
            #expect(upOutput.contains("dashboard.web_port: 127.0.0.1:\(mesh.ports.web) is already in use"))
            #expect(!upOutput.contains("started model-registry"))
        }
    }

    @Test func cleanRemovesOnlyWhatACrashLeftBehind() async throws {
        try await Mesh.with { mesh in
            let paths = mesh.paths
            try paths.prepare()
            // A stale socket (nothing listens), a record of a runner that is gone, old rotated logs.
            let stale = Listener.staleSocket(paths.runDir + "/registry.sock")
            try RunnerRecord.save([RunnerRecord(model: "x", process: ProcessIdentity(pid: 999_999, startTime: 1), port: 1, fingerprint: "f", argv: [], logPath: "")], paths)
            for n in [1, 5, 6, 9] { try writeText(paths.log("gateway") + ".\(n)", "old") }
            try writeText(paths.log("gateway"), "current")
            // The metadata cache: one entry for a file that exists, one for a file that is gone.
            let present = paths.stateDir + "/present.gguf"
            try writeText(present, "gguf")
            let cache = MetadataCacheFile(paths: paths)
            try cache.save([present: .init(stamp: FileStamp.of(present)!, value: .int(1)),
                            paths.stateDir + "/deleted.gguf": .init(stamp: FileStamp(inode: 1, size: 2, modifiedNanos: 3), value: .int(2))])
            let (code, output) = try await mesh.run(["clean"])
            #expect(code == .exited(0), "\(output)")
            #expect(stale && access(paths.runDir + "/registry.sock", F_OK) != 0)
            #expect(RunnerRecord.load(paths).isEmpty)
            #expect(access(paths.log("gateway") + ".6", F_OK) != 0 && access(paths.log("gateway") + ".9", F_OK) != 0)
            #expect(access(paths.log("gateway") + ".5", F_OK) == 0 && access(paths.log("gateway") + ".1", F_OK) == 0)
            #expect(access(paths.log("gateway"), F_OK) == 0, "current logs stay")
            #expect(Array(cache.load().keys) == [present], "only the entry of the deleted file is pruned")
            #expect(output.contains("1 metadata cache entry of files that no longer exist"))
            #expect(output.contains("item(s) removed"))
        }
    }
}

extension Listener {
    /// Leaves a Unix socket file with nobody listening (what a SIGKILLed service leaves).
    static func staleSocket(_ path: String) -> Bool {
        guard let l = try? Listener(.unix(path: path), loop: .shared) else { return false }
        let fd = l.fd
        Glibc.close(fd)  // closes without unlinking the file
        return access(path, F_OK) == 0
    }
}

func writeText(_ path: String, _ text: String) throws {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    guard fd >= 0 else { throw SystemError("open") }
    defer { close(fd) }
    _ = text.withCString { write(fd, $0, strlen($0)) }
}
