import Glibc

/// `<state>/cache/model-metadata.json`: what model-registry read from each model file, keyed by path and
/// valid while the file's inode, size and modification time are unchanged. It spares a restart from
/// re-parsing every GGUF header (seconds with many large models). Written atomically; an unreadable
/// or foreign file is ignored and rewritten. `launcher clean` prunes entries of files that are gone.
public struct MetadataCacheFile: Sendable {
    public struct Entry: Sendable, Equatable {
        public let stamp: FileStamp
        public let value: JSONValue
        public init(stamp: FileStamp, value: JSONValue) {
            self.stamp = stamp
            self.value = value
        }
    }

    /// 2: entries carry `layer_bytes` and `data_bytes` (a version-1 file is read again from the models).
    static let formatVersion = 2
    public let path: String

    public init(paths: RuntimePaths) { path = paths.stateDir + "/cache/model-metadata.json" }
    public init(path: String) { self.path = path }

    /// The entries on disk; empty when the file is missing, unreadable or of another format.
    public func load() -> [String: Entry] {
        guard let bytes = readFileBytes(path), let doc = try? JSONParser.parse(bytes).0,
              doc["version"]?.intValue == Self.formatVersion, let entries = doc["entries"]?.objectValue else { return [:] }
        var out: [String: Entry] = [:]
        for (file, e) in entries.entries {
            guard let inode = e["inode"]?.intValue, let size = e["size"]?.intValue, let mtime = e["mtime_ns"]?.intValue,
                  let value = e["metadata"] else { continue }
            out[file] = Entry(stamp: FileStamp(inode: UInt64(inode), size: size, modifiedNanos: mtime), value: value)
        }
        return out
    }

    public func save(_ entries: [String: Entry]) throws {
        var object = JSONObject()
        for (file, e) in entries.sorted(by: { $0.key < $1.key }) {
            object[file] = .object(JSONObject([("inode", .int(Int(e.stamp.inode))), ("size", .int(e.stamp.size)),
                                               ("mtime_ns", .int(e.stamp.modifiedNanos)), ("metadata", e.value)]))
        }
        let doc = JSONValue.object(JSONObject([("version", .int(Self.formatVersion)), ("entries", .object(object))]))
        if let slash = path.lastIndex(of: "/") { try makeDirectories(String(path[..<slash])) }
        try AtomicFile.write(JSONWriter.bytes(doc, pretty: false), to: path)
    }

    /// Drops the entries of files that no longer exist; returns their paths.
    public func prune() throws -> [String] {
        guard access(path, F_OK) == 0 else { return [] }
        var entries = load()
        let gone = entries.keys.filter { FileStamp.of($0) == nil }.sorted()
        guard !gone.isEmpty else { return [] }
        for file in gone { entries[file] = nil }
        try save(entries)
        return gone
    }
}
