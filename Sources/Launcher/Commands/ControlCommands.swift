import Glibc
import Shared

/// `launcher status`, `launcher restart <service>` and `launcher down`: clients of `launcher.sock`.
enum ControlCommands {
    /// Exit code of `status` when Llama Runner is not running (as `systemctl status` uses for inactive).
    static let notRunning: Int32 = 3

    static func client(_ options: ServiceOptions) -> RPCClient? {
        let socket = options.paths.launcherSocket
        guard Sockets.isUnixSocketLive(socket) else { return nil }
        let client = RPCClient(path: socket, defaultTimeout: 5)
        client.start()
        return client
    }

    static func status(_ options: ServiceOptions) async -> Int32 {
        guard let client = client(options) else {
            print("Llama Runner is not running (no launcher at \(options.paths.launcherSocket))")
            return notRunning
        }
        do {
            let report = try await client.call(LauncherRPC.Status.self, Empty())
            print(StatusTable.render(report))
            // The runner hosts, when the gateway uses others besides this machine's.
            let gateway = RPCClient(path: options.paths.socket(.gateway), defaultTimeout: 2)
            gateway.start()
            if let hosts = try? await gateway.call(GatewayRPC.Hosts.self, Empty(), timeout: 2), hosts.count > 1 {
                print("")
                print(StatusTable.render(hosts: hosts))
            }
            await gateway.close()
            return report.services.allSatisfy { $0.state == .running } ? ExitCode.ok : ExitCode.failure
        } catch {
            printError("launcher status: \(error)")
            return ExitCode.failure
        }
    }

    static func restart(_ options: ServiceOptions, service: String) async -> Int32 {
        guard ServiceName(argument: service) != nil else {
            printError("launcher restart: \(LauncherError.unknownService(service))")
            return ExitCode.usage
        }
        guard let client = client(options) else {
            printError("Llama Runner is not running (no launcher at \(options.paths.launcherSocket))")
            return notRunning
        }
        do {
            let status = try await client.call(LauncherRPC.Restart.self, ServiceRef(service: service), timeout: 90)
            print("\(status.name) restarted (pid \(status.pid.map(String.init) ?? "-"), \(status.state))")
            return ExitCode.ok
        } catch {
            printError("launcher restart: \(error)")
            return ExitCode.failure
        }
    }

    static func down(_ options: ServiceOptions) async -> Int32 {
        guard let client = client(options) else {
            print("Llama Runner is not running")
            return ExitCode.ok
        }
        do {
            let report = try await client.call(LauncherRPC.Status.self, Empty())
            _ = try await client.call(LauncherRPC.Down.self, Empty())
            await client.close()
            // The launcher exits once every service is stopped (at most 10 s each before SIGKILL).
            let until = deadline(after: 60)
            while kill(report.launcherPid, 0) == 0 && monotonicNanos() < until {
                try? await EventLoop.shared.sleep(seconds: 0.05)
            }
            if kill(report.launcherPid, 0) == 0 {
                printError("launcher down: the launcher (pid \(report.launcherPid)) is still running after 60 s")
                return ExitCode.failure
            }
            print("Llama Runner stopped")
            return ExitCode.ok
        } catch {
            printError("launcher down: \(error)")
            return ExitCode.failure
        }
    }
}

/// The `launcher status` table.
enum StatusTable {
    static func render(_ report: LauncherRPC.StatusReport) -> String {
        var rows: [[String]] = [["SERVICE", "PID", "STATE", "RESTARTS", "UPTIME"]]
        for s in report.services {
            rows.append([s.name, s.pid.map(String.init) ?? "-", s.state.rawValue, String(s.restarts), s.uptimeSeconds.map(duration) ?? "-"])
        }
        let widths = (0..<5).map { col in rows.map { $0[col].count }.max()! }
        var lines = rows.map { row in
            row.enumerated().map { i, cell in i == 4 ? cell : cell.padding(toLength: widths[i] + 2) }.joined()
        }
        for s in report.services { if let m = s.message { lines.append("\(s.name): \(m)") } }
        lines.append("launcher pid \(report.launcherPid), up \(duration(report.uptimeSeconds))")
        return lines.joined(separator: "\n")
    }

    /// The hosts table: each runner-manager the gateway places models on, its state, models and runners.
    static func render(hosts: [HostStatus]) -> String {
        var rows: [[String]] = [["HOST", "ADDRESS", "STATE", "FREE", "MODELS", "RUNNERS"]]
        for h in hosts {
            var free = "-"
            if let bytes = h.freeBytes {
                let tenths = (bytes * 10) >> 30
                free = "\(tenths / 10).\(tenths % 10) GiB"
            }
            let runners = h.runners.map { "\($0.model) (\($0.state.rawValue))" }.joined(separator: ", ")
            rows.append([h.name, h.address, h.state.rawValue, free, String(h.models.count), runners.isEmpty ? "-" : runners])
        }
        let widths = (0..<6).map { col in rows.map { $0[col].count }.max()! }
        var lines = rows.map { row in row.enumerated().map { i, cell in i == 5 ? cell : cell.padding(toLength: widths[i] + 2) }.joined() }
        for h in hosts where h.state != .up { if let e = h.error { lines.append("\(h.name): \(e)") } }
        return lines.joined(separator: "\n")
    }

    static func duration(_ seconds: Double) -> String {
        let s = Int(seconds)
        if s < 60 { return "\(s)s" }
        if s < 3600 { return "\(s / 60)m\(s % 60)s" }
        if s < 86400 { return "\(s / 3600)h\(s % 3600 / 60)m" }
        return "\(s / 86400)d\(s % 86400 / 3600)h"
    }
}
