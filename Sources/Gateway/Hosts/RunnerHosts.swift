import Shared
import Synchronization

/// The runner-managers this gateway places models on: its own ("local", on the Unix socket) and the
/// other machines of `hosts` in `app_config.json` (TCP, authenticated by each one's secret). Each is
/// asked `runners.host` every half second; one that does not answer within `heartbeatTimeout` is
/// down — its connection is dropped (a cut link sends nothing), the requests its runners were
/// answering are ended with an error, and placement skips it — until it answers again, which it does
/// by itself once reachable (the client keeps reconnecting). The table follows the config: `configure`
/// adds and removes hosts while the gateway runs (an edit, or a `discover` name that resolves anew).
final class RunnerHosts: Sendable {
    final class Host: Sendable {
        let name: String
        let client: RPCClient
        let isLocal: Bool
        let address: String
        /// What makes it the same host after a config change (`HostEndpoint.key`).
        let key: String
        /// Its `hosts` entry cannot be used (no port, an unreadable secret): never contacted, shown down with why.
        let misconfigured: Bool
        fileprivate let state = Mutex<(state: HostState, info: HostInfo?, error: String?, seenAt: Double?, models: RegistrySnapshot?)>(
            (.unknown, nil, nil, nil, nil))

        init(name: String, client: RPCClient, isLocal: Bool, address: String, key: String = "", misconfigured: String? = nil) {
            self.name = name
            self.client = client
            self.isLocal = isLocal
            self.address = address
            self.key = key
            self.misconfigured = misconfigured != nil
            if let misconfigured { state.withLock { $0 = (.down, nil, misconfigured, nil, nil) } }
        }

        var isUp: Bool { state.withLock { $0.state } == .up }
        var info: HostInfo? { state.withLock { $0.info } }
        var lastError: String? { state.withLock { $0.error } }
    }

    /// What happened to a host, as `onChange` is told.
    enum Change: String, Sendable {
        /// It answered (again), or its models changed.
        case up
        /// It stopped answering.
        case down
        /// Its `hosts` entry is gone (or its name no longer resolves to it).
        case removed
    }

    static let localName = "local"
    /// Seconds between heartbeats, and the longest one may take: a host is marked down at most
    /// `heartbeatInterval + heartbeatTimeout` after it stops answering.
    static let heartbeatInterval = 0.5
    static let heartbeatTimeout = 1.2

    let local: Host
    let loop: EventLoop
    /// Every host, the local one first, then the configured ones by name.
    private let table: Mutex<[Host]>
    /// This gateway's requests holding a lease, by host and model: counted at once, where the
    /// heartbeat's figures are up to half a second old (what spreads a burst over hosts).
    private let holding = Mutex<[String: Int]>([:])
    /// Told of each change of a host's state or models (the catalog merges models, the dashboard hears).
    private let listener = Mutex<(@Sendable (_ host: Host, _ change: Change) -> Void)?>(nil)
    /// Called once for each host that joins, before its first heartbeat (notifications are subscribed there).
    private let joiner = Mutex<(@Sendable (_ host: Host) -> Void)?>(nil)
    /// The `hosts` entries last configured (`rediscover` looks their `discover` names up again), and a
    /// count of `configure` calls: one that finishes after a newer one started changes nothing.
    private let configured = Mutex<(hosts: [String: AppConfig.RemoteHost], configDir: String, generation: Int)>(([:], "", 0))

    /// `local` is this machine's runner-manager client; `configure` adds the others.
    init(local client: RPCClient, loop: EventLoop) {
        local = Host(name: Self.localName, client: client, isLocal: true, address: "local", key: Self.localName)
        self.loop = loop
        table = Mutex([local])
    }

    var hosts: [Host] { table.withLock { $0 } }
    /// Whether any host besides the local one is configured (otherwise everything behaves as on one machine).
    var isMultiHost: Bool { table.withLock { $0.count } > 1 }
    var remote: [Host] { hosts.filter { !$0.isLocal } }

    func host(named name: String) -> Host? { hosts.first { $0.name == name } }

    func onChange(_ body: @escaping @Sendable (_ host: Host, _ change: Change) -> Void) { listener.withLock { $0 = body } }
    func onJoin(_ body: @escaping @Sendable (_ host: Host) -> Void) { joiner.withLock { $0 = body } }

    /// Takes `app_config.json` `hosts`: entries that are the same host as before keep their connection
    /// and state; new ones are connected; hosts no longer configured are closed, and the requests their
    /// runners were answering end (`removed`). A `discover` entry becomes one host per address.
    func configure(_ entries: [String: AppConfig.RemoteHost], configDir: String) async {
        let generation = configured.withLock { c -> Int in
            c = (entries, configDir, c.generation + 1)
            return c.generation
        }
        let endpoints = await HostEndpoints.resolve(entries, configDir: configDir)
        let (added, removed) = table.withLock { table -> ([Host], [Host]) in
            // A newer configure started while this one resolved: it decides.
            guard configured.withLock({ $0.generation }) == generation else { return ([], []) }
            let wanted = Set(endpoints.map(\.key))
            let removed = table.filter { !$0.isLocal && !wanted.contains($0.key) }
            let kept = Set(table.map(\.key))
            let added = endpoints.filter { !kept.contains($0.key) }.map(makeHost)
            table = [local] + (table.filter { !$0.isLocal && wanted.contains($0.key) } + added).sorted { $0.name < $1.name }
            return (added, removed)
        }
        for h in added {
            joiner.withLock { $0 }?(h)
            if !h.misconfigured { h.client.start() }
        }
        for h in removed {
            // A discovered host (`<entry>@<address>`) whose entry is still there left its name's addresses.
            let entry = h.name.splitOnce("@")?.before
            let why = entry.flatMap { entries[$0] }.map { "removed: \(h.address) is no longer an address of \($0.address)" } ?? "removed from app_config.json hosts"
            h.state.withLock { $0.state = .down; $0.error = why }
            listener.withLock { $0 }?(h, .removed)
            if !h.misconfigured { await h.client.close() }
        }
    }

    /// Looks `discover` names up again (a pod that joined or left the headless Service).
    func rediscover() async {
        let (entries, dir) = configured.withLock { ($0.hosts, $0.configDir) }
        guard entries.values.contains(where: \.discover) else { return }
        await configure(entries, configDir: dir)
    }

    /// Tells the listener, unless `host` was removed meanwhile (a heartbeat that was under way as its
    /// entry went: a new host of the same name must not have its requests ended).
    private func notify(_ host: Host, _ change: Change) {
        guard table.withLock({ $0.contains { $0 === host } }) else { return }
        listener.withLock { $0 }?(host, change)
    }

    private func makeHost(_ e: HostEndpoint) -> Host {
        let shown = e.address?.description ?? "?"
        // An endpoint without a problem has its address and secret (`HostEndpoints.resolve`).
        guard e.problem == nil, let address = e.address, case .success(let secret) = e.secret else {
            return Host(name: e.name, client: RPCClient(path: "/nonexistent", loop: loop), isLocal: false, address: shown, key: e.key,
                        misconfigured: e.problem ?? "unusable hosts entry")
        }
        let c = RPCClient(address: address, secret: secret, loop: loop, defaultTimeout: 10, maxBackoff: 1)
        return Host(name: e.name, client: c, isLocal: false, address: shown, key: e.key)
    }

    /// Starts the heartbeats (every host's, once there is more than the local one) and the periodic
    /// look-ups of `discover` names.
    func start(on periodic: PeriodicWork) {
        periodic.every(Self.heartbeatInterval) { [self] in
            let all = hosts
            guard all.count > 1 else { return }
            await withTaskGroup(of: Void.self) { group in
                for h in all where !h.misconfigured { group.addTask { await self.beat(h) } }
            }
        }
        periodic.every(HostEndpoints.rediscoverSeconds) { [self] in await rediscover() }
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
            if changed { notify(host, .up) }
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
            notify(host, .down)
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
            notify(host, .down)
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
