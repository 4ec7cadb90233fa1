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
    /// besides its own.
    public struct RemoteHost: Codable, Sendable, Equatable {
        /// `host:port` of its control plane.
        public var address: String
        /// The same secret as that host's `runner_host.secret_file`; relative to the config directory.
        public var secretFile: String

        public init(address: String, secretFile: String) {
            self.address = address
            self.secretFile = secretFile
        }

        enum CodingKeys: String, CodingKey { case address, secretFile = "secret_file" }

        /// The address as a socket address (`[v6]:port` for IPv6); nil when it has no port.
        public var socketAddress: SocketAddress? {
            guard let colon = address.lastIndex(of: ":"), let port = UInt16(address[address.index(after: colon)...]) else { return nil }
            var host = String(address[..<colon])
            if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
            return host.isEmpty ? nil : .tcp(host: host, port: port)
        }
    }
}
