extension AppConfig {
    /// `runner_host`: this machine's runner-manager also serves another machine's gateway, on TCP,
    /// and its runners listen on `host` (not loopback) with a key of their own.
    public struct RunnerHost: Codable, Sendable, Equatable {
        /// The address the control plane and the runners bind (this machine's address on the network
        /// the gateway reaches it by).
        public var host: String
        /// The control plane's TCP port.
        public var port: UInt16
        /// The shared secret the gateway must prove (`RPCAuth`); relative to the config directory.
        public var secretFile: String
        /// The address the gateway reaches the runners at, when `host` is a wildcard (`0.0.0.0`, `::`).
        public var advertiseHost: String?
        /// This host's name in the gateway's listings; default the machine's host name.
        public var name: String?

        public init(host: String, port: UInt16 = 7070, secretFile: String, advertiseHost: String? = nil, name: String? = nil) {
            self.host = host
            self.port = port
            self.secretFile = secretFile
            self.advertiseHost = advertiseHost
            self.name = name
        }

        enum CodingKeys: String, CodingKey {
            case host, port, secretFile = "secret_file", advertiseHost = "advertise_host", name
        }
        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            host = try c.decode(String.self, forKey: .host)
            port = try c.decodeIfPresent(UInt16.self, forKey: .port) ?? 7070
            secretFile = try c.decode(String.self, forKey: .secretFile)
            advertiseHost = try c.decodeIfPresent(String.self, forKey: .advertiseHost)
            name = try c.decodeIfPresent(String.self, forKey: .name)
        }

        /// The config with the environment's say over what differs per machine when one config serves
        /// many (a Kubernetes DaemonSet: `LLAMA_RUNNER_ADVERTISE_HOST` from the pod's IP,
        /// `LLAMA_RUNNER_HOST_NAME` from its node's name).
        public func overridden(by environment: [String: String]) -> RunnerHost {
            var c = self
            if let a = environment["LLAMA_RUNNER_ADVERTISE_HOST"], !a.isEmpty { c.advertiseHost = a }
            if let n = environment["LLAMA_RUNNER_HOST_NAME"], !n.isEmpty { c.name = n }
            return c
        }

        /// Where runners are reached from another machine.
        public var reachableHost: String {
            if let advertiseHost { return advertiseHost }
            return host == "0.0.0.0" || host == "::" ? "127.0.0.1" : host
        }
    }

    /// `hosts.<name>`: another machine's runner-manager (its `runner_host`) that this gateway uses
    /// besides its own; with `discover`, every machine its address's name resolves to.
    public struct RemoteHost: Codable, Sendable, Equatable {
        /// `host:port` of its control plane.
        public var address: String
        /// The same secret as that host's `runner_host.secret_file`; relative to the config directory.
        public var secretFile: String
        /// Every address the name resolves to is a host of its own, `<name>@<address>`, looked up
        /// again every `HostEndpoints.rediscoverSeconds` (a Kubernetes headless Service's name lists
        /// the DaemonSet's pods). Without it the name is resolved on each connect, first address only.
        public var discover: Bool

        public init(address: String, secretFile: String, discover: Bool = false) {
            self.address = address
            self.secretFile = secretFile
            self.discover = discover
        }

        enum CodingKeys: String, CodingKey { case address, secretFile = "secret_file", discover }
        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            address = try c.decode(String.self, forKey: .address)
            secretFile = try c.decode(String.self, forKey: .secretFile)
            discover = try c.decodeIfPresent(Bool.self, forKey: .discover) ?? false
        }
        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(address, forKey: .address)
            try c.encode(secretFile, forKey: .secretFile)
            if discover { try c.encode(true, forKey: .discover) }
        }

        /// The address split into host and port (`[v6]:port` for IPv6); nil when it has no port.
        public var hostAndPort: (host: String, port: UInt16)? {
            guard let colon = address.lastIndex(of: ":"), let port = UInt16(address[address.index(after: colon)...]) else { return nil }
            var host = String(address[..<colon])
            if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
            return host.isEmpty ? nil : (host, port)
        }

        /// The address as a socket address; nil when it has no port.
        public var socketAddress: SocketAddress? { hostAndPort.map { .tcp(host: $0.host, port: $0.port) } }
    }
}

/// One runner-manager to use, as a `hosts` entry gives it: a static entry is one, a `discover` entry
/// one per address its name resolves to. `key` tells whether a host is still the same one after the
/// config changed or a name resolved again (same name, address and secret).
public struct HostEndpoint: Sendable {
    public let name: String
    public let address: SocketAddress?
    public let secret: Result<RPCSecret, ConfigError>
    /// Why it cannot be used, when it cannot (no port, an unreadable secret, a name that resolves to nothing).
    public let problem: String?

    public var key: String {
        let secretPart: String
        switch secret {
        case .success(let s): secretPart = HMAC.sha256(key: s.bytes, message: Array("llama-runner-host-key".utf8)).map { String($0, radix: 16) }.joined()
        case .failure(let e): secretPart = "\(e)"
        }
        return "\(name)\u{0}\(address?.description ?? "?")\u{0}\(secretPart)\u{0}\(problem ?? "")"
    }
}

/// The hosts of `app_config.json` `hosts` as endpoints (shared by the gateway, which places models on
/// them, and metrics-service, which samples them).
public enum HostEndpoints {
    /// How often a `discover` entry's name is looked up again.
    public static let rediscoverSeconds = 10.0

    public static func resolve(_ hosts: [String: AppConfig.RemoteHost], configDir: String) async -> [HostEndpoint] {
        var out: [HostEndpoint] = []
        for (name, h) in hosts.sorted(by: { $0.key < $1.key }) {
            let secret = Result { () throws(ConfigError) in try RPCSecret.load(file: resolvePath(h.secretFile, configDir: configDir)) }
            let secretProblem: String? = if case .failure(let e) = secret { "\(e)" } else { nil }
            guard let (host, port) = h.hostAndPort else {
                out.append(HostEndpoint(name: name, address: nil, secret: secret, problem: "app_config.json: hosts.\(name).address: expected host:port"))
                continue
            }
            guard h.discover else {
                out.append(HostEndpoint(name: name, address: .tcp(host: host, port: port), secret: secret, problem: secretProblem))
                continue
            }
            let addresses = (try? await HostResolver.resolveAll(host)) ?? []
            if addresses.isEmpty {
                out.append(HostEndpoint(name: name, address: .tcp(host: host, port: port), secret: secret,
                                        problem: "app_config.json: hosts.\(name).address: \(host) resolves to no address (discover)"))
            }
            for a in addresses {
                out.append(HostEndpoint(name: "\(name)@\(a)", address: .tcp(host: a, port: port), secret: secret, problem: secretProblem))
            }
        }
        return out
    }
}
