import Glibc
import Shared

/// The gateway's public listening sockets, bound by the launcher and handed to every gateway it starts
/// (`InheritedSockets`, the systemd socket-activation convention). The launcher outlives gateways, so
/// its copies keep each socket listening while a gateway crashes or restarts: new connections wait in
/// the kernel's backlog for the next gateway instead of being refused.
///
/// Bound again from the config in force before each gateway start: a port that appeared is bound, one
/// that went is closed, one that cannot be bound is left to the gateway (which reports it, exit 78).
/// A launcher that was itself socket-activated (a systemd `.socket` unit) passes on the sockets it was
/// given instead of binding its own. Only touched from the supervisor's actor.
struct PublicSockets {
    private struct Bound {
        let port: AppConfig.PublicPort
        let fd: Int32
    }

    private var bound: [String: Bound] = [:]
    /// What systemd handed the launcher, claimed by name or port as the config asks for it.
    private var inherited: InheritedSockets

    init(inherited: InheritedSockets) { self.inherited = inherited }

    /// Binds what `ports` names and is not bound yet, closes what it no longer names, and returns the
    /// descriptors with their names, in a stable order.
    mutating func sync(_ ports: [AppConfig.PublicPort], logger: Logger) -> [(name: String, fd: Int32)] {
        let wanted = Dictionary(ports.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        for (name, b) in bound where wanted[name] != b.port {
            close(b.fd)
            bound[name] = nil
        }
        for port in ports where bound[port.name] == nil {
            if let fd = inherited.claim(name: port.name, port: port.port) {
                bound[port.name] = Bound(port: port, fd: fd)
                continue
            }
            do {
                bound[port.name] = Bound(port: port, fd: try Sockets.listen(.tcp(host: port.host, port: port.port)))
            } catch {
                logger.warning("cannot hold \(port.key) for the gateway: \(error)")
            }
        }
        return ports.compactMap { p in bound[p.name].map { (p.name, $0.fd) } }
    }

    /// Closes every socket (when everything stops).
    mutating func closeAll() {
        for b in bound.values { close(b.fd) }
        bound = [:]
    }
}
