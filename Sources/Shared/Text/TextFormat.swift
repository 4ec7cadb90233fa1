import Glibc

/// FNV-1a, 64 bits: the one content hash of the project (config revisions, runner fingerprints, model
/// digests). Not cryptographic; stable across processes and restarts, which is all these need.
public enum FNV1a {
    public static let offsetBasis: UInt64 = 0xcbf2_9ce4_8422_2325
    public static let prime: UInt64 = 0x100_0000_01b3

    public static func hash(_ bytes: some Sequence<UInt8>, basis: UInt64 = offsetBasis) -> UInt64 {
        var h = basis
        for b in bytes { h = (h ^ UInt64(b)) &* prime }
        return h
    }

    /// 16 lower-case hex digits.
    public static func hex(_ value: UInt64) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }
}

extension String {
    /// Padded with spaces to `length` characters (left as it is when already that long): table columns.
    public func padding(toLength length: Int) -> String {
        count >= length ? self : self + String(repeating: " ", count: length - count)
    }

    /// `value` in decimal with leading zeros to `width` digits.
    public static func zeroPadded(_ value: some BinaryInteger, width: Int) -> String {
        let digits = "\(value)"
        return String(repeating: "0", count: Swift.max(0, width - digits.count)) + digits
    }
}

/// Wall-clock times as RFC 3339 text in UTC (`2026-11-25T02:14:32.123Z`), without Foundation.
public enum UTCTime {
    /// `seconds` since the epoch and `nanoseconds` within that second, with `fractionDigits` (0–9) of
    /// the fraction.
    public static func rfc3339(seconds: Int, nanoseconds: Int, fractionDigits: Int) -> String {
        var t = time_t(seconds)
        var tm = Glibc.tm()
        gmtime_r(&t, &tm)
        var text = "\(String.zeroPadded(Int(tm.tm_year) + 1900, width: 4))-\(String.zeroPadded(tm.tm_mon + 1, width: 2))-" +
            "\(String.zeroPadded(tm.tm_mday, width: 2))T\(String.zeroPadded(tm.tm_hour, width: 2)):" +
            "\(String.zeroPadded(tm.tm_min, width: 2)):\(String.zeroPadded(tm.tm_sec, width: 2))"
        if fractionDigits > 0 {
            let digits = min(fractionDigits, 9)
            var scale = 1
            for _ in 0..<(9 - digits) { scale *= 10 }
            text += "." + String.zeroPadded(nanoseconds / scale, width: digits)
        }
        return text + "Z"
    }

    /// Now, from `CLOCK_REALTIME`.
    public static func now(fractionDigits: Int) -> String {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return rfc3339(seconds: ts.tv_sec, nanoseconds: ts.tv_nsec, fractionDigits: fractionDigits)
    }
}
