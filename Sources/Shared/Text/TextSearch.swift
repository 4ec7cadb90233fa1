extension StringProtocol {
    /// Whether `other` occurs in this text (by UTF-8 bytes, so canonically equivalent spellings differ).
    /// The standard library's `contains(_: some StringProtocol)` lives in `_StringProcessing`, which the
    /// services do not link (Package.swift).
    public func containsText<T: StringProtocol>(_ other: T) -> Bool {
        let needle = Array(other.utf8)
        guard let first = needle.first else { return true }
        let hay = Array(utf8)
        guard hay.count >= needle.count else { return false }
        var i = 0
        let last = hay.count - needle.count
        while i <= last {
            if hay[i] == first {
                var j = 1
                while j < needle.count && hay[i + j] == needle[j] { j += 1 }
                if j == needle.count { return true }
            }
            i += 1
        }
        return false
    }
}
