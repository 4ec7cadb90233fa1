import Testing
@testable import Shared

@Suite struct TextFormatTests {
    @Test func fnv1aMatchesTheReferenceVectors() {
        // From the FNV reference test suite (64-bit FNV-1a).
        #expect(FNV1a.hash("".utf8) == 0xcbf2_9ce4_8422_2325)
        #expect(FNV1a.hash("a".utf8) == 0xaf63_dc4c_8601_ec8c)
        #expect(FNV1a.hash("foobar".utf8) == 0x8594_4171_f739_67e8)
        #expect(FNV1a.hex(0xab) == "00000000000000ab")
    }

    @Test func rfc3339TimesInUTCWithTheAskedFraction() {
        #expect(UTCTime.rfc3339(seconds: 0, nanoseconds: 5, fractionDigits: 9) == "1970-01-01T00:00:00.000000005Z")
        #expect(UTCTime.rfc3339(seconds: 1_764_556_472, nanoseconds: 123_456_789, fractionDigits: 3) == "2025-12-01T02:34:32.123Z")
        #expect(UTCTime.rfc3339(seconds: 951_782_400, nanoseconds: 0, fractionDigits: 0) == "2000-02-29T00:00:00Z")
    }

    @Test func paddingAndZeroPadding() {
        #expect("ab".padding(toLength: 4) == "ab  ")
        #expect("abcdef".padding(toLength: 4) == "abcdef")
        #expect(String.zeroPadded(7, width: 3) == "007")
        #expect(String.zeroPadded(1234, width: 3) == "1234")
    }

    /// By scalar, not by grapheme: "\r\n" in the set trims a lone "\n" too (a Character compare missed
    /// it, and sysfs values and pointer files end in "\n").
    @Test func trimmingCharactersComparesScalars() {
        #expect("0x1002\n".trimmingCharacters(in: " \r\n") == "0x1002")
        #expect("\r\n  a b \r\n".trimmingCharacters(in: " \r\n") == "a b")
        #expect("\tx\n\r".trimmingCharacters(in: " \t\n\r") == "x")
        #expect("xyx".trimmingCharacters(in: "x") == "y")
        #expect("é".trimmingCharacters(in: "e") == "é")
    }
}
