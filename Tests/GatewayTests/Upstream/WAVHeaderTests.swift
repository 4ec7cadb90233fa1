import Testing
@testable import Gateway

@Suite struct WAVHeaderTests {
    static let wav: [UInt8] = {
        // RIFF header: PCM, 16 kHz, mono, 16-bit (byte rate 32000), 64000 data bytes = 2 s.
        func u32(_ v: Int) -> [UInt8] { [UInt8(v & 0xff), UInt8(v >> 8 & 0xff), UInt8(v >> 16 & 0xff), UInt8(v >> 24 & 0xff)] }
        var h = Array("RIFF".utf8) + u32(36 + 64000) + Array("WAVEfmt ".utf8) + u32(16)
        h += [1, 0, 1, 0] + u32(16000) + u32(32000) + [2, 0, 16, 0] + Array("data".utf8) + u32(64000)
        return h + [UInt8](repeating: 7, count: 500)
    }()

    @Test func durationFromTheHeader() {
        #expect(WAVHeader.duration(head: Array(Self.wav.prefix(64))) == 2.0)
        #expect(WAVHeader.duration(head: Array("ID3 mp3 data".utf8)) == nil)
        #expect(WAVHeader.duration(head: Array(Self.wav.prefix(30))) == nil)
    }
}
