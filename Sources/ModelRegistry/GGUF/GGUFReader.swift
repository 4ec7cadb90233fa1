import Glibc
import Shared

/// Errors of reading a GGUF file, with the offset, so a corrupt file is reported precisely and
/// discovery moves on to the next one.
struct GGUFError: Error, CustomStringConvertible, Equatable {
    let path: String
    let message: String
    var description: String { "\(path): \(message)" }
}

/// Reads the header, the key/value section and the tensor infos of a GGUF file (versions 2 and 3) —
/// never tensor data, so a 10 GB model reads in milliseconds. Token lists and other large arrays are
/// skipped and summarized by element type and length.
///
/// Layout (ggml's `docs/gguf.md`): magic `GGUF`, u32 version, u64 tensor count, u64 key/value count;
/// each key/value is a string key, a u32 type and a value; then per tensor a string name, u32 dims,
/// u64 × dims, u32 type, u64 offset. Strings are a u64 length and UTF-8 bytes. Little-endian.
struct GGUFReader {
    /// Value types (gguf_type).
    enum ValueType: UInt32 {
        case uint8 = 0, int8, uint16, int16, uint32, int32, float32, bool, string, array, uint64, int64, float64

        var name: String {
            switch self {
            case .uint8: "uint8"
            case .int8: "int8"
            case .uint16: "uint16"
            case .int16: "int16"
            case .uint32: "uint32"
            case .int32: "int32"
            case .float32: "float32"
            case .bool: "bool"
            case .string: "string"
            case .array: "array"
            case .uint64: "uint64"
            case .int64: "int64"
            case .float64: "float64"
            }
        }

        var fixedSize: Int? {
            switch self {
            case .uint8, .int8, .bool: 1
            case .uint16, .int16: 2
            case .uint32, .int32, .float32: 4
            case .uint64, .int64, .float64: 8
            case .string, .array: nil
            }
        }
    }

    /// Arrays longer than this are summarized instead of listed.
    static let inlineArrayLimit = 64
    static let maxStringBytes = 64 << 20
    static let maxKeyValues = 1 << 20
    static let maxTensors = 1 << 24

    let path: String
    private let fd: Int32
    private var buffer = [UInt8](repeating: 0, count: 1 << 20)
    private var bufferStart = 0  // file offset of buffer[0]
    private var bufferCount = 0
    private(set) var offset = 0  // current file offset
    let fileSize: Int

    private init(path: String, fd: Int32, fileSize: Int) {
        self.path = path
        self.fd = fd
        self.fileSize = fileSize
    }

    /// Reads the metadata of the file at `path`.
    static func read(path: String) throws(GGUFError) -> GGUFMetadata {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw GGUFError(path: path, message: "cannot open: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var st = stat()
        fstat(fd, &st)
        var reader = GGUFReader(path: path, fd: fd, fileSize: Int(st.st_size))
        return try reader.parse()
    }

    func fail(_ message: String) -> GGUFError { GGUFError(path: path, message: message) }

    private mutating func fill(_ count: Int) throws(GGUFError) -> Int {
        // Returns the index in `buffer` where `count` bytes at `offset` start.
        if offset >= bufferStart && offset + count <= bufferStart + bufferCount {
            return offset - bufferStart
        }
        if count > buffer.count { buffer = [UInt8](repeating: 0, count: count) }
        bufferStart = offset
        bufferCount = 0
        while bufferCount < buffer.count {
            let n = buffer.withUnsafeMutableBytes { raw in
                pread(fd, raw.baseAddress! + bufferCount, raw.count - bufferCount, off_t(bufferStart + bufferCount))
            }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            bufferCount += n
        }
        guard bufferCount >= count else {
            throw fail("truncated: needed \(count) bytes at offset \(offset), the file has \(fileSize)")
        }
        return 0
    }

    private mutating func bytes(_ count: Int) throws(GGUFError) -> ArraySlice<UInt8> {
        let start = try fill(count)
        offset += count
        return buffer[start..<(start + count)]
    }

    private mutating func skip(_ count: Int) throws(GGUFError) {
        guard offset + count <= fileSize else { throw fail("truncated: a value at offset \(offset) runs past the end of the file") }
        offset += count
    }

    private mutating func u32() throws(GGUFError) -> UInt32 {
        let b = try bytes(4)
        return b.reversed().reduce(0) { $0 << 8 | UInt32($1) }
    }

    private mutating func u64() throws(GGUFError) -> UInt64 {
        let b = try bytes(8)
        return b.reversed().reduce(0) { $0 << 8 | UInt64($1) }
    }

    private mutating func string(_ what: @autoclosure () -> String) throws(GGUFError) -> String {
        let length = try u64()
        guard length <= UInt64(Self.maxStringBytes) else { throw fail("\(what()): string length \(length) is implausible (corrupt file?)") }
        return String(decoding: try bytes(Int(length)), as: UTF8.self)
    }

    private mutating func skipString(_ what: @autoclosure () -> String) throws(GGUFError) {
        let length = try u64()
        guard length <= UInt64(Self.maxStringBytes) else { throw fail("\(what()): string length \(length) is implausible (corrupt file?)") }
        try skip(Int(length))
    }

    private mutating func scalar(_ type: ValueType) throws(GGUFError) -> JSONValue {
        switch type {
        case .uint8: return .int(Int(try bytes(1).first!))
        case .int8: return .int(Int(Int8(bitPattern: try bytes(1).first!)))
        case .bool: return .bool(try bytes(1).first! != 0)
        case .uint16:
            let b = try bytes(2)
            return .int(Int(UInt16(b[b.startIndex]) | UInt16(b[b.startIndex + 1]) << 8))
        case .int16:
            let b = try bytes(2)
            return .int(Int(Int16(bitPattern: UInt16(b[b.startIndex]) | UInt16(b[b.startIndex + 1]) << 8)))
        case .uint32: return .int(Int(try u32()))
        case .int32: return .int(Int(Int32(bitPattern: try u32())))
        case .float32: return .double(Double(Float(bitPattern: try u32())))
        case .uint64:
            let v = try u64()
            return v <= UInt64(Int.max) ? .int(Int(v)) : .double(Double(v))
        case .int64: return .int(Int(Int64(bitPattern: try u64())))
        case .float64: return .double(Double(bitPattern: try u64()))
        case .string, .array: return .null
        }
    }

    private mutating func value(_ type: ValueType, key: String, depth: Int) throws(GGUFError) -> JSONValue {
        switch type {
        case .string:
            return .string(try string(key))
        case .array:
            guard depth < 4 else { throw fail("\(key): arrays nested too deeply") }
            let rawType = try u32()
            guard let elementType = ValueType(rawValue: rawType) else { throw fail("\(key): unknown array element type \(rawType)") }
            let count = try u64()
            guard count <= UInt64(fileSize) else { throw fail("\(key): array length \(count) is larger than the file") }
            if count > UInt64(Self.inlineArrayLimit) {
                if let size = elementType.fixedSize {
                    try skip(Int(count) * size)
                } else if elementType == .string {
                    for _ in 0..<count { try skipString(key) }
                } else {
                    for _ in 0..<count { _ = try value(elementType, key: key, depth: depth + 1) }
                }
                return .object(JSONObject([("type", .string("array")), ("element_type", .string(elementType.name)), ("length", .int(Int(count)))]))
            }
            var items: [JSONValue] = []
            for _ in 0..<count {
                items.append(elementType == .string || elementType == .array
                             ? try value(elementType, key: key, depth: depth + 1) : try scalar(elementType))
            }
            return .array(items)
        default:
            return try scalar(type)
        }
    }

    private mutating func parse() throws(GGUFError) -> GGUFMetadata {
        guard fileSize >= 24 else { throw fail("not a GGUF file: only \(fileSize) bytes") }
        guard Array(try bytes(4)) == Array("GGUF".utf8) else { throw fail("not a GGUF file (no GGUF magic at the start)") }
        let version = try u32()
        guard version == 2 || version == 3 else { throw fail("unsupported GGUF version \(version) (2 and 3 are supported)") }
        let tensorCount = try u64()
        let kvCount = try u64()
        guard kvCount <= UInt64(Self.maxKeyValues), tensorCount <= UInt64(Self.maxTensors) else {
            throw fail("implausible header (\(tensorCount) tensors, \(kvCount) keys): corrupt file")
        }
        var entries = JSONObject()
        var types: [String: String] = [:]
        for n in 0..<Int(kvCount) {
            let key = try string("key \(n)")
            let rawType = try u32()
            guard let type = ValueType(rawValue: rawType) else { throw fail("\(key): unknown value type \(rawType)") }
            entries[key] = try value(type, key: key, depth: 0)
            types[key] = type.name
        }
        var parameters = 0
        // Offsets of the repeating layers' tensors (`blk.N.…`) and of the others, to size each by the
        // distance to the next one (the type's block size is not needed, padding included).
        var offsets: [(offset: UInt64, layer: Bool)] = []
        offsets.reserveCapacity(Int(tensorCount))
        for n in 0..<Int(tensorCount) {
            let name = try string("tensor \(n) name")
            let dims = try u32()
            guard dims >= 1 && dims <= 8 else { throw fail("tensor \(n): \(dims) dimensions (corrupt file?)") }
            var elements = 1
            for _ in 0..<dims {
                let d = try u64()
                guard d < 1 << 40 else { throw fail("tensor \(n): implausible dimension \(d)") }
                elements = elements.multipliedReportingOverflow(by: Int(d)).partialValue
            }
            _ = try u32()  // type
            offsets.append((try u64(), name.hasPrefix("blk.")))
            parameters += elements
        }
        // Tensor data starts at the next multiple of `general.alignment` (32 by default).
        let alignment = max(1, entries["general.alignment"]?.intValue ?? 32)
        let dataStart = (offset + alignment - 1) / alignment * alignment
        var layerBytes = 0
        let sorted = offsets.sorted { $0.offset < $1.offset }
        for (i, t) in sorted.enumerated() where t.layer {
            let end = i + 1 < sorted.count ? Int(sorted[i + 1].offset) : fileSize - dataStart
            layerBytes += max(0, end - Int(t.offset))
        }
        return GGUFMetadata(version: Int(version), tensorCount: Int(tensorCount), fileSize: fileSize,
                            parameterCount: parameters, entries: entries,
                            layerBytes: offsets.isEmpty ? nil : layerBytes, dataBytes: max(0, fileSize - dataStart))
    }
}
