/// Reads a `multipart/form-data` body (RFC 7578) as it streams past, without keeping it: the small
/// text fields, and for each file part its name, filename, content type, size and first bytes. Feed
/// it the body piece by piece (any split, down to single bytes); it keeps at most one delimiter's
/// length of body plus one part's headers. Used by the gateway to find an upload's `model` field
/// while the upload itself is relayed, not buffered.
public struct MultipartScanner: Sendable {
    public struct FilePart: Sendable, Equatable {
        public var name: String
        public var filename: String
        public var contentType: String?
        public var size = 0
        /// The first `headBytes` bytes (enough for a WAV header).
        public var head: [UInt8] = []
    }

    enum State: Sendable { case delimiter, afterDelimiter, headers, body, done }

    public static let headBytes = 64
    static let maxHeaderBytes = 16 * 1024

    /// Text fields (parts without a filename), in order; each value up to `fieldLimit` bytes.
    public private(set) var fields: [(name: String, value: String)] = []
    public private(set) var files: [FilePart] = []
    /// The closing delimiter was seen.
    public var finished: Bool { state == .done && error == nil }
    /// Why the body is not valid multipart, once that is known (nothing more is read after it).
    public private(set) var error: String?

    let delimiter: [UInt8]
    let fieldLimit: Int
    var state = State.delimiter
    var pending: [UInt8]
    var current: (name: String, isFile: Bool, value: [UInt8])?

    /// `boundary` from the request's Content-Type (see `boundary(in:)`).
    public init(boundary: String, fieldLimit: Int = 64 * 1024) {
        delimiter = Array("\r\n--\(boundary)".utf8)
        self.fieldLimit = fieldLimit
        // The first delimiter may open the body without a preceding CRLF: pretend there was one.
        pending = [13, 10]
    }

    /// The first value of a text field.
    public func field(_ name: String) -> String? { fields.first { $0.name == name }?.value }

    /// The boundary parameter of a `multipart/form-data` Content-Type, or nil if it is not one.
    public static func boundary(in contentType: String?) -> String? {
        guard let contentType else { return nil }
        let parts = contentType.split(separator: ";").map { String($0).trimmingCharacters(in: " \t") }
        guard parts.first?.lowercased() == "multipart/form-data" else { return nil }
        for p in parts.dropFirst() {
            guard let eq = p.firstIndex(of: "="), String(p[..<eq]).trimmingCharacters(in: " ").lowercased() == "boundary" else { continue }
            var value = String(p[p.index(after: eq)...]).trimmingCharacters(in: " ")
            if value.hasPrefix("\""), value.hasSuffix("\""), value.count >= 2 { value = String(value.dropFirst().dropLast()) }
            return (1...70).contains(value.utf8.count) ? value : nil
        }
        return nil
    }

    public mutating func feed(_ bytes: some Collection<UInt8>) {
        guard error == nil, state != .done else { return }
        pending.append(contentsOf: bytes)
        var i = 0
        loop: while error == nil {
            switch state {
            case .delimiter, .body:
                // Find the next delimiter; body bytes before it belong to the current part.
                guard let at = byteSearch(delimiter, in: pending, from: i) else {
                    let keep = max(i, pending.count - (delimiter.count - 1))
                    if state == .body { consume(pending[i..<keep]) }
                    i = keep
                    break loop
                }
                if state == .body { consume(pending[i..<at]); finishPart() }
                i = at + delimiter.count
                state = .afterDelimiter
            case .afterDelimiter:
                // "--" closes the body; otherwise optional whitespace, then CRLF opens a part.
                var j = i
                while j < pending.count, pending[j] == 32 || pending[j] == 9 { j += 1 }
                guard pending.count - j >= 2 else { break loop }
                if pending[i] == 45 && pending.count - i >= 2 && pending[i + 1] == 45 {
                    state = .done
                    i = pending.count
                    break loop
                }
                guard pending[j] == 13 && pending[j + 1] == 10 else {
                    error = "malformed multipart body: a delimiter is not followed by CRLF"
                    break loop
                }
                i = j + 2
                state = .headers
            case .headers:
                guard let end = byteSearch([13, 10, 13, 10], in: pending, from: i) else {
                    if pending.count - i > Self.maxHeaderBytes { error = "multipart part headers are longer than \(Self.maxHeaderBytes) bytes" }
                    break loop
                }
                // A part with no headers at all starts its body right away.
                let headerBytes = end == i ? [] : Array(pending[i..<end])
                i = end + 4
                startPart(String(decoding: headerBytes, as: UTF8.self))
                state = .body
            case .done:
                break loop
            }
        }
        pending.removeFirst(min(i, pending.count))
    }

    /// Ends the scan at the end of the body: an error if the closing delimiter never came.
    public mutating func finish() {
        if error == nil && state != .done { error = "the multipart body ended before its closing boundary" }
    }

    mutating func startPart(_ headers: String) {
        var name: String?
        var filename: String?
        var contentType: String?
        for line in headers.split(separator: "\r\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let key = String(line[..<colon]).trimmingCharacters(in: " ").lowercased()
            let value = String(line[line.index(after: colon)...]).trimmingCharacters(in: " \t")
            if key == "content-type" { contentType = value }
            guard key == "content-disposition" else { continue }
            name = Self.parameter("name", in: value)
            filename = Self.parameter("filename", in: value)
        }
        guard let name else {
            error = "a multipart part has no Content-Disposition name"
            return
        }
        if let filename {
            files.append(FilePart(name: name, filename: filename, contentType: contentType))
            current = (name, true, [])
        } else {
            current = (name, false, [])
        }
    }

    mutating func consume(_ bytes: ArraySlice<UInt8>) {
        guard !bytes.isEmpty, var part = current else { return }
        if part.isFile {
            let n = files.count - 1
            files[n].size += bytes.count
            let room = Self.headBytes - files[n].head.count
            if room > 0 { files[n].head += bytes.prefix(room) }
        } else {
            guard part.value.count + bytes.count <= fieldLimit else {
                error = "the form field \(part.name) is longer than \(fieldLimit) bytes"
                return
            }
            part.value += bytes
            current = part
        }
    }

    mutating func finishPart() {
        if let part = current, !part.isFile, error == nil {
            fields.append((part.name, String(decoding: part.value, as: UTF8.self)))
        }
        current = nil
    }

    /// `name="value"` (quoted, with backslash escapes) or `name=token` from a header value.
    static func parameter(_ key: String, in value: String) -> String? {
        let chars = Array(value.utf8)
        var i = 0
        while i < chars.count {
            // Skip to the next ';'-separated parameter.
            while i < chars.count && chars[i] != 59 { i += 1 }
            i += 1
            while i < chars.count && (chars[i] == 32 || chars[i] == 9) { i += 1 }
            var j = i
            while j < chars.count && chars[j] != 61 && chars[j] != 59 { j += 1 }
            guard j < chars.count, chars[j] == 61 else { continue }
            let k = String(decoding: chars[i..<j], as: UTF8.self).trimmingCharacters(in: " ").lowercased()
            j += 1
            var out: [UInt8] = []
            if j < chars.count && chars[j] == 34 {
                j += 1
                while j < chars.count && chars[j] != 34 {
                    if chars[j] == 92 && j + 1 < chars.count { j += 1 }
                    out.append(chars[j])
                    j += 1
                }
                j += 1
            } else {
                while j < chars.count && chars[j] != 59 { out.append(chars[j]); j += 1 }
            }
            if k == key { return String(decoding: out, as: UTF8.self).trimmingCharacters(in: " ") }
            i = j
        }
        return nil
    }
}
