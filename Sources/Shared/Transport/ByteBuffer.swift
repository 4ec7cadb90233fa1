import Glibc

/// A growable byte buffer with separate read and write indices, used for connection input (parsed in
/// place) and output (responses assembled, then written in one `send`). A class so its storage address
/// is stable across suspensions; owned by one task at a time, so it is not Sendable.
public final class ByteBuffer {
    private var storage: UnsafeMutableRawPointer
    /// Allocated bytes.
    public private(set) var capacity: Int
    /// Index of the first unread byte.
    public private(set) var readerIndex = 0
    /// Index one past the last written byte.
    public private(set) var writerIndex = 0

    public init(capacity: Int = 4096) {
        self.capacity = max(capacity, 64)
        storage = UnsafeMutableRawPointer.allocate(byteCount: self.capacity, alignment: 16)
    }

    deinit { storage.deallocate() }

    /// Bytes written and not yet consumed.
    @inline(__always) public var readableCount: Int { writerIndex - readerIndex }
    /// Free bytes after `writerIndex`.
    @inline(__always) public var writableCount: Int { capacity - writerIndex }
    /// The unread bytes. Valid until the next mutation.
    @inline(__always) public var readable: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: storage + readerIndex, count: readableCount)
    }
    /// Where the next write lands (after `reserveWritable`).
    @inline(__always) public var writePointer: UnsafeMutableRawPointer { storage + writerIndex }

    /// Makes room for at least `count` more bytes, first by moving unread bytes to the front.
    public func reserveWritable(_ count: Int) {
        if writableCount >= count { return }
        if readerIndex > 0 {
            let live = readableCount
            if live > 0 { memmove(storage, storage + readerIndex, live) }
            readerIndex = 0
            writerIndex = live
            if writableCount >= count { return }
        }
        var newCapacity = capacity
        while newCapacity - writerIndex < count { newCapacity *= 2 }
        let grown = UnsafeMutableRawPointer.allocate(byteCount: newCapacity, alignment: 16)
        grown.copyMemory(from: storage, byteCount: writerIndex)
        storage.deallocate()
        storage = grown
        capacity = newCapacity
    }

    /// Records `count` bytes written at `writePointer`.
    @inline(__always) public func commitWrite(_ count: Int) { writerIndex += count }

    /// Drops `count` bytes from the front of the unread bytes.
    @inline(__always) public func consume(_ count: Int) {
        readerIndex += count
        if readerIndex == writerIndex {
            readerIndex = 0
            writerIndex = 0
        }
    }

    /// Empties the buffer, keeping its capacity.
    public func clear() {
        readerIndex = 0
        writerIndex = 0
    }

    /// Appends raw bytes.
    public func append(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count > 0 else { return }
        reserveWritable(bytes.count)
        (storage + writerIndex).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
        writerIndex += bytes.count
    }

    /// Appends an array of bytes.
    public func append(_ bytes: [UInt8]) { bytes.withUnsafeBytes { append($0) } }

    /// Appends a slice of bytes.
    public func append(_ bytes: ArraySlice<UInt8>) { bytes.withUnsafeBytes { append($0) } }

    /// Appends a string's UTF-8 bytes.
    public func append(_ string: String) {
        var s = string
        s.withUTF8 { append(UnsafeRawBufferPointer($0)) }
    }

    /// Appends a static string's bytes (no allocation).
    public func append(_ string: StaticString) {
        append(UnsafeRawBufferPointer(start: string.utf8Start, count: string.utf8CodeUnitCount))
    }

    /// Appends one byte.
    @inline(__always) public func append(byte: UInt8) {
        reserveWritable(1)
        storage.storeBytes(of: byte, toByteOffset: writerIndex, as: UInt8.self)
        writerIndex += 1
    }

    /// Appends a non-negative integer in decimal.
    public func append(decimal value: Int) {
        var v = value
        var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                     UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) =
            (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var n = 0
        withUnsafeMutableBytes(of: &digits) { raw in
            repeat {
                raw[19 - n] = UInt8(48 + v % 10)
                v /= 10
                n += 1
            } while v > 0 && n < 20
            append(UnsafeRawBufferPointer(rebasing: raw[(20 - n)...]))
        }
    }

    /// Appends a non-negative integer in lower-case hexadecimal (chunk sizes).
    public func append(hex value: Int) {
        let digits: StaticString = "0123456789abcdef"
        var shift = 60
        while shift > 0 && (value >> shift) & 0xF == 0 { shift -= 4 }
        while shift >= 0 {
            append(byte: digits.utf8Start[(value >> shift) & 0xF])
            shift -= 4
        }
    }

    /// Copies out the unread bytes.
    public func readableArray() -> [UInt8] { Array(readable) }
}
