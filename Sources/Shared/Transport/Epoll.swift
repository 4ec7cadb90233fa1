import Glibc

/// The three `epoll(7)` calls and their event layout. The Swift `Glibc` module exports neither the
/// functions nor `struct epoll_event`, so the functions are resolved with `dlsym` (as `GNU.accept4`
/// is) and events are read and written as raw bytes: on x86_64 the struct is packed (a `UInt32` of
/// flags, then the 64-bit user data at offset 4, 12 bytes in all); elsewhere it has natural alignment
/// (data at offset 8, 16 bytes).
struct Epoll: ~Copyable {
    static let readable: UInt32 = 0x001      // EPOLLIN
    static let writable: UInt32 = 0x004      // EPOLLOUT
    static let error: UInt32 = 0x008         // EPOLLERR
    static let hangUp: UInt32 = 0x010        // EPOLLHUP
    static let readHangUp: UInt32 = 0x2000   // EPOLLRDHUP
    static let edgeTriggered: UInt32 = 1 << 31  // EPOLLET

    #if arch(x86_64)
    static let eventSize = 12
    static let dataOffset = 4
    #else
    static let eventSize = 16
    static let dataOffset = 8
    #endif

    private typealias Create1 = @convention(c) (Int32) -> Int32
    private typealias Control = @convention(c) (Int32, Int32, Int32, UnsafeMutableRawPointer?) -> Int32
    private typealias Wait = @convention(c) (Int32, UnsafeMutableRawPointer?, Int32, Int32) -> Int32

    private struct Calls {
        let create1: Create1
        let control: Control
        let wait: Wait
    }

    private static let calls: Calls = {
        let handle = dlopen(nil, RTLD_NOW)
        func symbol<T>(_ name: String, as: T.Type) -> T {
            guard let pointer = dlsym(handle, name) else { fatalError("\(name) is not in this C library: the event loop needs Linux's epoll") }
            return unsafeBitCast(pointer, to: T.self)
        }
        return Calls(create1: symbol("epoll_create1", as: Create1.self),
                     control: symbol("epoll_ctl", as: Control.self),
                     wait: symbol("epoll_wait", as: Wait.self))
    }()

    /// The epoll descriptor (close-on-exec).
    let fd: Int32
    /// Room for `capacity` events, filled by `wait`.
    private let events: UnsafeMutableRawPointer
    let capacity: Int

    init(capacity: Int = 256) {
        let fd = Self.calls.create1(Int32(O_CLOEXEC))
        precondition(fd >= 0, "epoll_create1 failed: \(SystemError("epoll_create1"))")
        self.fd = fd
        self.capacity = capacity
        events = UnsafeMutableRawPointer.allocate(byteCount: capacity * Self.eventSize, alignment: 8)
    }

    deinit {
        events.deallocate()
        close(fd)
    }

    enum Operation: Int32 { case add = 1, remove = 2, modify = 3 }

    /// `epoll_ctl`; returns 0 or `errno`.
    func control(_ operation: Operation, _ descriptor: Int32, events flags: UInt32, data: UInt64) -> Int32 {
        var event = (UInt64(0), UInt64(0))
        return withUnsafeMutableBytes(of: &event) { raw -> Int32 in
            raw.storeBytes(of: flags, toByteOffset: 0, as: UInt32.self)
            raw.storeBytes(of: data, toByteOffset: Self.dataOffset, as: UInt64.self)
            return Self.calls.control(fd, operation.rawValue, descriptor, raw.baseAddress) == 0 ? 0 : errno
        }
    }

    /// `epoll_wait`: the number of events ready (0 on timeout), or -1 with `errno`.
    func wait(timeoutMilliseconds: Int32) -> Int {
        Int(Self.calls.wait(fd, events, Int32(capacity), timeoutMilliseconds))
    }

    /// Event `i` of the last `wait`: its flags and its user data.
    func event(_ i: Int) -> (flags: UInt32, data: UInt64) {
        let base = events + i * Self.eventSize
        return (base.loadUnaligned(as: UInt32.self), base.loadUnaligned(fromByteOffset: Self.dataOffset, as: UInt64.self))
    }
}
