/// What the gateway reads of an uploaded WAV file's header (for the audio metrics).
enum WAVHeader {
    /// Seconds of audio in a WAV file, from the start of its bytes (RIFF header, `fmt ` byte rate and
    /// the `data` chunk size, when they fall within `head`), or nil for anything else.
    static func duration(head: [UInt8]) -> Double? {
        guard head.count >= 12, head[0..<4].elementsEqual("RIFF".utf8), head[8..<12].elementsEqual("WAVE".utf8) else { return nil }
        func u32(_ at: Int) -> Int { Int(head[at]) | Int(head[at + 1]) << 8 | Int(head[at + 2]) << 16 | Int(head[at + 3]) << 24 }
        var at = 12
        var byteRate = 0
        while at + 8 <= head.count {
            let id = head[at..<(at + 4)]
            let size = u32(at + 4)
            if id.elementsEqual("fmt ".utf8), at + 20 <= head.count { byteRate = u32(at + 16) }
            if id.elementsEqual("data".utf8) { return byteRate > 0 && size > 0 ? Double(size) / Double(byteRate) : nil }
            at += 8 + size + (size & 1)
        }
        return nil
    }
}
