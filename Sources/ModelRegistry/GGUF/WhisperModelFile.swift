import Glibc
import Shared

/// A whisper.cpp model file (the ggml layout `scripts/whisper_ct2_to_ggml.py` and whisper.cpp's own
/// converters write): checked by its magic and header, so a wrong or truncated file is reported by the
/// registry and `launcher check` instead of failing when whisper-server starts.
enum WhisperModelFile {
    enum Result: Equatable { case valid, missing, invalid(String) }

    static let magic: UInt32 = 0x6767_6d6c

    static func check(_ path: String) -> Result {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return errno == ENOENT ? .missing : .invalid("\(path): \(SystemError("open"))") }
        defer { close(fd) }
        var header = [UInt32](repeating: 0, count: 12)
        let n = header.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
        guard n == 48 else { return .invalid("\(path): too short for a whisper.cpp model (\(max(0, n)) bytes)") }
        guard UInt32(littleEndian: header[0]) == magic else {
            return .invalid("\(path): not a whisper.cpp ggml model (bad magic; GGUF files are for llama-server)")
        }
        let vocab = Int32(bitPattern: UInt32(littleEndian: header[1]))
        let mels = Int32(bitPattern: UInt32(littleEndian: header[10]))
        guard vocab > 0, mels == 80 || mels == 128 else {
            return .invalid("\(path): implausible whisper header (vocabulary \(vocab), \(mels) mel bands)")
        }
        return .valid
    }
}
