import Testing
@testable import Shared

/// The streaming multipart/form-data scanner the gateway uses to find an upload's `model` field.
@Suite struct MultipartTests {
    static let wav: [UInt8] = {
        // RIFF header: PCM, 16 kHz, mono, 16-bit (byte rate 32000), 64000 data bytes = 2 s.
        func u32(_ v: Int) -> [UInt8] { [UInt8(v & 0xff), UInt8(v >> 8 & 0xff), UInt8(v >> 16 & 0xff), UInt8(v >> 24 & 0xff)] }
        var h = Array("RIFF".utf8) + u32(36 + 64000) + Array("WAVEfmt ".utf8) + u32(16)
        h += [1, 0, 1, 0] + u32(16000) + u32(32000) + [2, 0, 16, 0] + Array("data".utf8) + u32(64000)
        return h + [UInt8](repeating: 7, count: 500)
    }()

    static func form(_ boundary: String = "XyZ") -> [UInt8] {
        var b = Array("--\(boundary)\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n".utf8)
        b += Array("--\(boundary)\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a \\\"b\\\".wav\"\r\nContent-Type: audio/wav\r\n\r\n".utf8)
        b += wav
        // A body containing something that looks like the boundary, but not after CRLF.
        b += Array("--\(boundary)x".utf8)
        b += Array("\r\n--\(boundary)\r\ncontent-disposition: form-data; name=response_format\r\n\r\nsrt\r\n--\(boundary)--\r\n".utf8)
        return b
    }

    @Test func findsFieldsAndFileAtEverySplit() {
        let body = Self.form()
        for split in [1, 2, 3, 7, 13, 64, 511, body.count] {
            var s = MultipartScanner(boundary: "XyZ")
            var i = 0
            while i < body.count {
                s.feed(body[i..<min(body.count, i + split)])
                i += split
            }
            s.finish()
            #expect(s.error == nil, "split \(split)")
            #expect(s.finished)
            #expect(s.field("model") == "whisper-1")
            #expect(s.field("response_format") == "srt")
            #expect(s.files.count == 1)
            #expect(s.files.first?.name == "file")
            #expect(s.files.first?.filename == "a \"b\".wav")
            #expect(s.files.first?.contentType == "audio/wav")
            #expect(s.files.first?.size == Self.wav.count + "--XyZx".utf8.count)
            #expect(s.files.first?.head == Array(Self.wav.prefix(MultipartScanner.headBytes)))
        }
    }

    @Test func modelIsKnownBeforeTheFileArrives() {
        let body = Self.form()
        var s = MultipartScanner(boundary: "XyZ")
        let fileStart = body.firstRange(of: Array("filename".utf8))!.lowerBound
        s.feed(body[..<fileStart])
        #expect(s.field("model") == "whisper-1")
        #expect(!s.finished)
    }

    @Test func malformedBodiesAreErrors() {
        var s = MultipartScanner(boundary: "XyZ")
        s.feed(Array("--XyZ\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nw".utf8))
        s.finish()
        #expect(s.error?.contains("closing boundary") == true)

        var t = MultipartScanner(boundary: "XyZ")
        t.feed(Array("--XyZ\r\nContent-Type: text/plain\r\n\r\nno name\r\n--XyZ--".utf8))
        #expect(t.error?.contains("no Content-Disposition name") == true)

        var u = MultipartScanner(boundary: "XyZ", fieldLimit: 8)
        u.feed(Array("--XyZ\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\n0123456789\r\n--XyZ--".utf8))
        #expect(u.error?.contains("longer than 8 bytes") == true)

        var v = MultipartScanner(boundary: "XyZ")
        v.feed(Array("--XyZ garbage\r\n".utf8))
        #expect(v.error?.contains("not followed by CRLF") == true)
    }

    @Test func boundaryComesFromTheContentType() {
        #expect(MultipartScanner.boundary(in: "multipart/form-data; boundary=abc123") == "abc123")
        #expect(MultipartScanner.boundary(in: "Multipart/Form-Data;charset=utf-8; Boundary=\"a b:c\"") == "a b:c")
        #expect(MultipartScanner.boundary(in: "application/json") == nil)
        #expect(MultipartScanner.boundary(in: "multipart/form-data") == nil)
        #expect(MultipartScanner.boundary(in: "multipart/form-data; boundary=" + String(repeating: "x", count: 71)) == nil)
        #expect(MultipartScanner.boundary(in: nil) == nil)
    }

}
