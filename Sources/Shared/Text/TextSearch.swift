/// The first position of `needle` in `haystack` at or after `start` (nil when absent or empty).
func byteSearch(_ needle: [UInt8], in haystack: [UInt8], from start: Int = 0) -> Int? {
    guard let first = needle.first, haystack.count >= needle.count else { return nil }
    var i = start
    let last = haystack.count - needle.count
    return haystack.withUnsafeBufferPointer { h in
        needle.withUnsafeBufferPointer { n in
            while i <= last {
                if h[i] == first {
                    var k = 1
                    while k < n.count && h[i + k] == n[k] { k += 1 }
                    if k == n.count { return i }
                }
                i += 1
            }
            return nil
        }
    }
}

extension StringProtocol {
    /// Whether `other` occurs in this text (by UTF-8 bytes, so canonically equivalent spellings differ).
    /// The standard library's `contains(_: some StringProtocol)` lives in `_StringProcessing`, which the
    /// services do not link (Package.swift).
    public func containsText<T: StringProtocol>(_ other: T) -> Bool {
        other.isEmpty || byteSearch(Array(other.utf8), in: Array(utf8)) != nil
    }

    /// The text before and after the first occurrence of `separator` (nil when it does not occur).
    public func splitOnce<T: StringProtocol>(_ separator: T) -> (before: String, after: String)? {
        let bytes = Array(utf8)
        guard let i = byteSearch(Array(separator.utf8), in: bytes) else { return nil }
        return (String(decoding: bytes[..<i], as: UTF8.self), String(decoding: bytes[(i + separator.utf8.count)...], as: UTF8.self))
    }
}
