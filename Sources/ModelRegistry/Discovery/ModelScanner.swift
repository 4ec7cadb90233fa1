import Glibc
import Shared

/// A GGUF file found in a models folder.
struct FoundFile: Sendable, Equatable {
    /// Absolute path.
    let path: String
    /// The folder it is in.
    let folder: String
    /// File name without `.gguf` and without a split suffix.
    let stem: String
    /// A multimodal projector (`mmproj*.gguf`), attached to a model rather than a model itself.
    let isProjector: Bool
}

/// Walks the models folders for `*.gguf` files: recursively to `maxDepth`, following symlinks, and
/// remembering each directory's device and inode so a symlink loop cannot make it walk forever.
/// Split models (`name-00001-of-00003.gguf`) yield only their first shard.
enum ModelScanner {
    static let maxDepth = 4

    static func scan(_ folders: [String]) -> (files: [FoundFile], problems: [String]) {
        var files: [FoundFile] = []
        var problems: [String] = []
        var visited = Set<[UInt64]>()
        for folder in folders {
            var st = stat()
            guard stat(folder, &st) == 0 else {
                problems.append("\(folder): \(String(cString: strerror(errno)))")
                continue
            }
            walk(folder, depth: 0, visited: &visited, files: &files, problems: &problems)
        }
        return (files.sorted { $0.path < $1.path }, problems)
    }

    private static func walk(_ dir: String, depth: Int, visited: inout Set<[UInt64]>, files: inout [FoundFile], problems: inout [String]) {
        var st = stat()
        guard stat(dir, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else { return }
        guard visited.insert([UInt64(st.st_dev), UInt64(st.st_ino)]).inserted else { return }  // loop or seen
        guard let entries = listDirectory(dir) else {
            problems.append("\(dir): \(String(cString: strerror(errno)))")
            return
        }
        let names = entries.filter { !$0.hasPrefix(".") }
        for name in names.sorted() {
            let path = dir + "/" + name
            var entry = stat()
            guard stat(path, &entry) == 0 else { continue }  // dangling symlink
            switch entry.st_mode & S_IFMT {
            case S_IFDIR:
                if depth + 1 <= maxDepth { walk(path, depth: depth + 1, visited: &visited, files: &files, problems: &problems) }
            case S_IFREG:
                guard name.lowercased().hasSuffix(".gguf") else { continue }
                var stem = String(name.dropLast(5))
                if let split = splitSuffix(stem) {
                    if split.index != 1 { continue }
                    stem = split.base
                }
                files.append(FoundFile(path: path, folder: dir, stem: stem, isProjector: name.lowercased().hasPrefix("mmproj")))
            default:
                continue
            }
        }
    }

    /// `name-00001-of-00003` → ("name", 1, 3).
    static func splitSuffix(_ stem: String) -> (base: String, index: Int, count: Int)? {
        let parts = stem.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count >= 4, parts[parts.count - 2] == "of",
              let index = Int(parts[parts.count - 3]), let count = Int(parts[parts.count - 1]),
              parts[parts.count - 3].count == 5, parts[parts.count - 1].count == 5, index >= 1, count >= index else { return nil }
        return (parts[0..<(parts.count - 3)].joined(separator: "-"), index, count)
    }

    /// A model id from a file stem: lower case, letters, digits, `.`, `_` and `-` only.
    static func id(fromStem stem: String) -> String {
        var out = ""
        for c in stem.lowercased().unicodeScalars {
            if CharacterSetASCII.isIdentifier(c) || c == "." {
                out.unicodeScalars.append(c)
            } else if !out.hasSuffix("-") {
                out += "-"
            }
        }
        let trimmed = out.trimmingCharacters(in: "-.")
        return trimmed.isEmpty ? "model" : trimmed
    }
}


/// `path` relative to `base` when it is below `base`'s parent chain, e.g. `../models/x.gguf` from
/// `/repo/config` for `/repo/models/x.gguf`; otherwise the absolute path.
func relativePath(_ path: String, from base: String) -> String {
    let p = path.split(separator: "/")
    let b = base.split(separator: "/")
    var common = 0
    while common < p.count && common < b.count && p[common] == b[common] { common += 1 }
    guard common > 0 else { return path }
    let ups = b.count - common
    if ups > 2 { return path }
    return (Array(repeating: "..", count: ups) + p[common...].map(String.init)).joined(separator: "/")
}

