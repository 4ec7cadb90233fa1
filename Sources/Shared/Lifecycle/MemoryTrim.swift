import Glibc

/// Hands memory that glibc's malloc keeps after a burst back to the system, every `interval` seconds.
/// Measured on the gateway: 256 streaming clients for 15 s left its RSS at 22.8 MB (15.5 MB idle), 25.8 MB
/// after a second burst; `malloc_trim(0)` brought it back to 15.9 MB, so the growth was freed memory held
/// by the allocator, not a leak. The trim runs on the blocking pool, off the event loop, and costs well
/// under a millisecond on these small heaps. Started by `ServiceMain` for every service, as its periodic work.
public enum MemoryTrim {
    public static func start(on periodic: PeriodicWork, interval: Double = 10) {
        guard GNU.mallocTrim != nil else { return }
        periodic.every(interval) { await BlockingPool.shared.run { _ = GNU.mallocTrim?(0) } }
    }
}
