import Testing
@testable import Shared

/// SHA-256 against FIPS 180-4's own examples (and the NIST long-message vector), the pure Swift one
/// and the libcrypto-backed `Hasher256` alike, fed whole and in pieces split around block edges.
@Suite struct SHA256Tests {
    static let vectors: [(String, String)] = [
        ("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
        ("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
        ("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"),
        ("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
         "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"),
    ]

    @Test(arguments: vectors)
    func fipsVectors(_ v: (String, String)) {
        #expect(SHA256.hex(SHA256.digest(Array(v.0.utf8))) == v.1)
        let h = Hasher256()
        h.update(Array(v.0.utf8))
        #expect(SHA256.hex(h.finish()) == v.1)
    }

    @Test func aMillionAs() {
        let a = [UInt8](repeating: 0x61, count: 1_000_000)
        #expect(SHA256.hex(SHA256.digest(a)) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
        let h = Hasher256()
        h.update(a)
        #expect(SHA256.hex(h.finish()) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    @Test func piecesSplitAnywhereGiveTheSameDigest() {
        let data = (0..<300).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        let whole = SHA256.digest(data)
        for cut in [0, 1, 55, 56, 63, 64, 65, 119, 120, 128, 200, 299, 300] {
            var s = SHA256()
            s.update(Array(data[..<cut]))
            s.update(Array(data[cut...]))
            #expect(s.finish() == whole, "cut at \(cut)")
        }
        var bytewise = SHA256()
        for b in data { bytewise.update([b]) }
        #expect(bytewise.finish() == whole)
    }

    @Test func libcryptoIsUsedHere() {
        // This machine has OpenSSL 3; the fallback is what the vectors above also check.
        #expect(Hasher256().usesOpenSSL, "\(OpenSSL.unavailableReason ?? "")")
    }
}
