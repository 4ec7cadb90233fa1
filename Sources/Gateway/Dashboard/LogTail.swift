import Glibc
import Shared
import Synchronization

/// Live log lines for the dashboard's event stream: while someone listens, every second the new lines
/// of each service log (`<state>/logs/<service>.log`) and runner log (`logs/runners/<model>.log`) are
/// published as `log` events `{source, line}`. Offsets start at the end, so only new lines are sent.
/// Each poll (a directory listing, a stat and a read per file) runs on one blocking thread, never on
/// the event loop.
final class LogTail: Sendable {
    let paths: RuntimePaths
    let hub: EventHub
    /// Read and written by the poll jobs only, one at a time (each tick waits for its poll).
    private let offsets = Mutex<[String: Int]>([:])

    init(paths: RuntimePaths, hub: EventHub) {
        self.paths = paths
        self.hub = hub
    }

    func files() -> [(source: String, path: String)] {
        var list = (ServiceName.startOrder.map(\.rawValue) + ["launcher"]).map { ($0, paths.log($0)) }
        let runners = paths.logsDir + "/runners"
        for name in listDirectory(runners) ?? [] where name.hasSuffix(".log") {
            list.append(("runner:" + String(name.dropLast(4)), runners + "/" + name))
        }
        return list
    }

    func poll() {
        let listening = hub.count > 0
        for (source, path) in files() {
            guard let size = FileStamp.of(path)?.size else { continue }
            let start = offsets.withLock { o -> Int in
                defer { o[path] = size }
                return o[path] ?? size
            }
            guard listening, size > start, let bytes = readFileBytes(path, maxBytes: min(size - start, 256 * 1024)) else { continue }
            for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n").suffix(200) {
                hub.publish("log", .object(JSONObject([("source", .string(source)), ("line", .string(String(line)))])))
            }
        }
    }

    /// Polls every second as the gateway's periodic work.
    func start(on periodic: PeriodicWork) {
        let queue = BlockingPool.shared.queue(for: "log-tail")
        periodic.every(1) { [self] in await queue.run { self.poll() } }
    }
}
