import Shared
import Synchronization

/// The runner-managers this gateway places models on: its own ("local", on the Unix socket) and the
/// other machines of `hosts` in `app_config.json` (TCP, authenticated by each one's secret). Each is
/// asked `runners.host` every half second; one that does not answer within `heartbeatTimeout` is
/// down — its connection is dropped (a cut link sends nothing), the requests its runners were
/// answering are ended with an error, and placement skips it — until it answers again, which it does
/// by itself once reachable (the client keeps reconnecting).
final class RunnerHosts: Sendable {
    final class Host: Sendable {
        let name: String
        let client: RPCClient
        let isLocal: Bool
        let address: String
        /// Its `hosts` entry cannot be used (no port, an unreadable secret): never contacted, shown down with why.
        let misconfigured: Bool
        fileprivate let state = Mutex<(state: HostState, info: HostInfo?, error: String?, seenAt: Double?, models: RegistrySnapshot?)>(
            (.unknown, nil, nil, nil, nil))

        init(name: String, client: RPCClient, isLocal: Bool, address: String, misconfigured: String? = nil) {
            self.name = name
            self.client = client
            self.isLocal = isLocal
            self.address = address
            self.misconfigured = misconfigured != nil
            if let misconfigured { state.withLock { $0 = (.down, nil, misconfigured, nil, nil) } }
        }

        var isUp: Bool { state.withLock { $0.state } == .up }
        var info: HostInfo? { state.withLock { $0.info } }
        var lastError: String? { state.withLock { $0.error } }
    }

    static let localName = "local"
    /// Seconds between heartbeats, and the longest one may take: a host is marked down at most
    /// `heartbeatInterval + heartbeatTimeout` after it stops answering.
    static let heartbeatInterval = 0.5
    static let heartbeatTimeout = 1.2

    let hosts: [Host]
    let local: Host
    /// This gateway's requests holding a lease, by host and model: counted at once, where the
    /// heartbeat's figures are up to half a second old (what spreads a burst over hosts).
    private let holding = Mutex<[String: Int]>([:])
    /// Told of each change of a host's state or models (the catalog merges models, the dashboard hears).
    private let listener = Mutex<(@Sendable (_ host: Host, _ wentDown: Bool) -> Void)?>(nil)

    /// `local` is this machine's runner-manager client; `remote` the configured hosts with their
    /// secrets (a host whose secret cannot be read is kept, down, with the reason).
    init(local client: RPCClient, remote: [(name: String, address: SocketAddress?, secret: Result<RPCSecret, ConfigError>)], loop: EventLoop) {
        local = Host(name: Self.localName, client: client, isLocal: true, address: "local")
        var all = [local]
        for r in remote.sorted(by: { $0.name < $1.name }) {
            switch (r.address, r.secret) {
            case (let address?, .success(let secret)):
                let c = RPCClient(address: address, secret: secret, loop: loop, defaultTimeout: 10, maxBackoff: 1)
                all.append(Host(name: r.name, client: c, isLocal: false, address: address.description))
            case (let address, .failure(let error)):
                all.append(Host(name: r.name, client: RPCClient(path: "/nonexistent", loop: loop), isLocal: false,
                                address: address?.description ?? "?", misconfigured: "\(error)"))
            case (nil, _):
                all.append(Host(name: r.name, client: RPCClient(path: "/nonexistent", loop: loop), isLocal: false, address: "?",
                                misconfigured: "app_config.json: hosts.\(r.name).address: expected host:port"))
            }
        }
        hosts = all
    }

    /// Whether any host besides the local one is configured (otherwise everything behaves as on one machine).
    var isMultiHost: Bool { hosts.count > 1 }
    var remote: [Host] { hosts.filter { !$0.isLocal } }

    func host(named name: String) -> Host? { hosts.first { $0.name == name } }

    func onChange(_ body: @escaping @Sendable (_ host: Host, _ wentDown: Bool) -> Void) { listener.withLock { $0 = body } }

    /// Starts the remote clients and the heartbeats.
    func start(on periodic: PeriodicWork) {
        for h in remote where !h.misconfigured { h.client.start() }
        guard isMultiHost else { return }
        periodic.every(Self.heartbeatInterval) { [self] in
            await withTaskGroup(of: Void.self) { group in
                for h in hosts where !h.misconfigured { group.addTask { await self.beat(h) } }
            }
        }
    }

    /// One heartbeat: `runners.host`, and the host's model table when its revision moved.
    func beat(_ host: Host) async {
        do {
            let info = try await host.client.call(RunnersRPC.Host.self, Empty(), timeout: Self.heartbeatTimeout)
            let known = host.state.withLock { $0.models?.revision }
            var models: RegistrySnapshot?
            if !host.isLocal && known != info.revision {
                models = try? await host.client.call(RunnersRPC.Models.self, Empty(), timeout: 5)
            }
            let (changed, _) = host.state.withLock { s -> (Bool, Bool) in
                let was = s.state
                let modelsChanged = models != nil
                s.state = .up
                s.info = info
                s.error = nil
                s.seenAt = Double(unixMillis()) / 1000
                if let models { s.models = models }
                return (was != .up || modelsChanged || s.info?.models != info.models, false)
            }
            if changed { listener.withLock { $0 }?(host, false) }
        } catch {
            let wentDown = host.state.withLock { s -> Bool in
                let was = s.state
                s.state = .down
                s.error = "\(error)"
                return was != .down
            }
            guard wentDown else { return }
            // A link that was cut leaves the TCP connection open and silent: start over.
            if !host.isLocal { host.client.dropConnection() }
            listener.withLock { $0 }?(host, true)
        }
    }

    /// A call to the host failed on its connection (acquire): it is down until its next heartbeat answers.
    func markDown(_ host: Host, _ error: String) {
        guard !host.isLocal else { return }
        let wentDown = host.state.withLock { s -> Bool in
            defer { s.state = .down; s.error = error }
            return s.state != .down
        }
        if wentDown {
            host.client.dropConnection()
            listener.withLock { $0 }?(host, true)
        }
    }

    /// Counts a granted lease of this gateway's on `host`; the returned closure (the lease's release) uncounts it.
    func track(_ host: Host, model: String) -> @Sendable () -> Void {
        let key = host.name + "\u{0}" + model
        holding.withLock { $0[key, default: 0] += 1 }
        return { [self] in holding.withLock { $0[key, default: 1] -= 1 } }
    }

    /// The hosts to try for `model`, best first (`HostPlacement`).
    func candidates(for model: String) -> [Host] {
        let held = holding.withLock { $0 }
        let views = hosts.map { h -> HostPlacement.View in
            let (state, info) = h.state.withLock { ($0.state, $0.info) }
            let runner = info?.runners.first { $0.model == model }
            // Busy: this gateway's own leases there now, and what others queued by the last heartbeat.
            let mine = held[h.name + "\u{0}" + model] ?? 0
            return HostPlacement.View(name: h.name, up: state == .up, hasModel: info?.models.contains(model) ?? false,
                                      runner: runner?.state, busy: mine + (runner?.queued ?? 0), freeBytes: info?.freeBytes ?? 0)
        }
        return HostPlacement.order(views).compactMap { host(named: $0) }
    }

    /// Down hosts whose last report had `model` (for the message when no host up has it).
    func downHosts(having model: String) -> [String] {
        hosts.filter { h in h.state.withLock { $0.state != .up && ($0.info?.models.contains(model) ?? false) } }.map(\.name)
    }

    /// Models only remote hosts have, as their registries resolve them (the catalog lists them).
    var remoteModels: [ResolvedModel] {
        var seen = Set<String>()
        var out: [ResolvedModel] = []
        for h in remote {
            for m in h.state.withLock({ $0.models?.models ?? [] }) where m.state == .available && seen.insert(m.id).inserted { out.append(m) }
        }
        return out
    }

    /// Every host's runners, each tagged with its host (the local one's answer only, on one machine).
    func allRunners() async -> [RunnerInfo] {
        guard isMultiHost else { return (try? await local.client.call(RunnersRPC.List.self, Empty(), timeout: 2)) ?? [] }
        var all: [RunnerInfo] = []
        for h in hosts {
            let list: [RunnerInfo]
            if h.isLocal {
                list = (try? await h.client.call(RunnersRPC.List.self, Empty(), timeout: 2)) ?? []
            } else {
                list = h.isUp ? h.info?.runners ?? [] : []
            }
            all += list.map { var r = $0; r.host = h.name; return r }
        }
        return all
    }

    var statuses: [HostStatus] {
        hosts.map { h in
            h.state.withLock { s in
                HostStatus(name: h.name, address: h.address, state: h.isLocal && s.state == .unknown ? .up : s.state, error: s.error,
                           lastSeenAt: s.seenAt, reportedName: s.info?.name, models: s.info?.models ?? [], freeBytes: s.info?.freeBytes,
                           devices: s.info?.hardware.devices ?? [], runners: s.info?.runners ?? [])
            }
        }
    }
}
