/// HMAC-SHA256 (RFC 2104 with FIPS 180-4 SHA-256, test vectors from RFC 4231): what proves, in the
/// control plane's TCP handshake, that both ends hold the shared secret without it crossing the wire.
public enum HMAC {
    /// The 32-byte tag of `message` under `key`.
    public static func sha256(key: [UInt8], message: [UInt8]) -> [UInt8] {
        let blockSize = 64
        var k = key.count > blockSize ? SHA256.digest(key) : key
        k += [UInt8](repeating: 0, count: blockSize - k.count)
        var inner = SHA256()
        inner.update(k.map { $0 ^ 0x36 })
        inner.update(message)
        var outer = SHA256()
        outer.update(k.map { $0 ^ 0x5c })
        outer.update(inner.finish())
        return outer.finish()
    }

    /// Whether two secrets or tags are equal, in time that depends only on the longer one's length (no
    /// early exit that would tell an attacker how many leading bytes of a guess were right).
    public static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        var diff = a.count ^ b.count
        for i in 0..<max(a.count, b.count) { diff |= Int((i < a.count ? a[i] : 0) ^ (i < b.count ? b[i] : 0)) }
        return diff == 0
    }
}
