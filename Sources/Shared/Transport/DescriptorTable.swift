/// The event loop's table of descriptors: which task waits on which descriptor, and the readiness
/// edges that arrived while none did. Only `EventLoop` uses it, under its lock.

/// A suspended wait. Resumed exactly once, by whoever takes it out of its slot under the lock
/// (an edge, its deadline, a cancellation, a close or a replacing `adopt`): that is what makes the
/// unchecked continuation (no allocation per wait) safe.
struct DescriptorWaiter {
    var id: UInt64
    var continuation: UnsafeContinuation<Void, any Error>
    var deadline: UInt64  // 0 = none
}

/// One descriptor adopted by an `EventLoop`: its registration generation, the edges no waiter has
/// taken yet, and its waiters.
struct DescriptorSlot {
    var generation: UInt32
    /// An edge arrived that no waiter has taken yet.
    var readable = false
    var writable = false
    var reader: DescriptorWaiter?
    var writer: DescriptorWaiter?
}

/// The descriptors an `EventLoop` has adopted, indexed by number (numbers are small and dense): updated in place.
struct DescriptorTable {
    private(set) var storage: [DescriptorSlot?] = []

    subscript(fd: Int32) -> DescriptorSlot? { Int(fd) < storage.count ? storage[Int(fd)] : nil }

    mutating func insert(_ slot: DescriptorSlot, at fd: Int32) -> DescriptorSlot? {
        let i = Int(fd)
        if i >= storage.count { storage.append(contentsOf: repeatElement(nil, count: i + 1 - storage.count)) }
        defer { storage[i] = slot }
        return storage[i]
    }

    mutating func remove(_ fd: Int32) -> DescriptorSlot? {
        guard Int(fd) < storage.count else { return nil }
        defer { storage[Int(fd)] = nil }
        return storage[Int(fd)]
    }

    /// Runs `body` on the slot in place; nil when the number holds none.
    mutating func update<R>(_ fd: Int32, _ body: (inout DescriptorSlot) -> R) -> R? {
        let i = Int(fd)
        guard i < storage.count, storage[i] != nil else { return nil }
        return body(&storage[i]!)
    }

    /// Takes every waiter whose deadline is at or before `now` into `expired`; returns the
    /// earliest deadline left.
    mutating func expire(at now: UInt64, into expired: inout [(UnsafeContinuation<Void, any Error>, (any Error)?)]) -> UInt64 {
        var earliest = UInt64.max
        for i in storage.indices where storage[i] != nil {
            if let w = storage[i]!.reader, w.deadline != 0 {
                if w.deadline <= now { expired.append((w.continuation, EventLoopError.timedOut)); storage[i]!.reader = nil } else { earliest = min(earliest, w.deadline) }
            }
            if let w = storage[i]!.writer, w.deadline != 0 {
                if w.deadline <= now { expired.append((w.continuation, EventLoopError.timedOut)); storage[i]!.writer = nil } else { earliest = min(earliest, w.deadline) }
            }
        }
        return earliest
    }
}
