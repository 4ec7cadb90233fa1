import Glibc

/// The entry names of a directory, without `.` and `..`, unsorted; nil if it cannot be opened (errno
/// says why).
public func listDirectory(_ path: String) -> [String]? {
    guard let d = opendir(path) else { return nil }
    defer { closedir(d) }
    var names: [String] = []
    while let e = readdir(d) {
        let name = withUnsafeBytes(of: e.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
        if name != "." && name != ".." { names.append(name) }
    }
    return names
}

/// `rm -rf`: removes a file, or a directory and everything below it (symlinks are removed, not followed).
public func removeTree(_ path: String) {
    var st = stat()
    guard lstat(path, &st) == 0 else { return }
    if (st.st_mode & S_IFMT) == S_IFDIR {
        for name in listDirectory(path) ?? [] { removeTree(path + "/" + name) }
        rmdir(path)
    } else {
        unlink(path)
    }
}

/// A new private directory `/tmp/<prefix>-XXXXXX` (mkdtemp).
public func makeTemporaryDirectory(prefix: String) throws -> String {
    var template = Array("/tmp/\(prefix)-XXXXXX".utf8CString)
    guard let made = mkdtemp(&template) else {
        throw PathError(path: "/tmp/\(prefix)-XXXXXX", reason: String(cString: strerror(errno)))
    }
    return String(cString: made)
}
