import Glibc
import Synchronization

/// SIGINT and SIGTERM without Dispatch. The handler does only what is async-signal-safe: the first
/// signal writes its number to a pipe that a task on the event loop reads and turns into a call; a signal
/// after a stop was requested (by a signal, or by `ServiceGroup.requestShutdown`) ends the process at
/// once with exit code 1, from the handler itself, so it works even if the event loop is stuck.
///
/// Why not `DispatchSource.makeSignalSource`: importing the Dispatch overlay links Swift's
/// `_StringProcessing` and `_RegexParser` into every process (about 0.9 MB of resident memory each), and
/// signals were all the services used Dispatch for.
public enum ProcessSignals {
    /// Whether a stop was requested; read and set by the signal handler (an atomic, so that is safe).
    static let stopRequested = Atomic<Bool>(false)
    nonisolated(unsafe) private static var pipeWrite: Int32 = -1
    private static let installed = Mutex(false)

    /// Records a stop request, so that the next signal exits at once.
    public static func noteStopRequested() {
        stopRequested.store(true, ordering: .sequentiallyConsistent)
    }

    /// Calls `handler` on `loop` with `SIGINT` or `SIGTERM` for the first of them. Once per process.
    public static func handle(on loop: EventLoop, _ handler: @escaping @Sendable (String) -> Void) {
        let first = installed.withLock { done -> Bool in
            defer { done = true }
            return !done
        }
        guard first else { return }
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { return }
        configureDescriptor(fds[0], nonBlocking: true)
        configureDescriptor(fds[1], nonBlocking: true)
        pipeWrite = fds[1]
        _ = stopRequested.load(ordering: .relaxed) // initialised here, never first inside the handler
        let readFD = fds[0]
        loop.adopt(readFD)
        Task(executorPreference: loop) {
            var byte: UInt8 = 0
            while true {
                do { try await loop.wait(readFD, for: .read) } catch { return }
                while read(readFD, &byte, 1) == 1 {
                    handler(Int32(byte) == SIGINT ? "SIGINT" : "SIGTERM")
                }
            }
        }
        for sig in [SIGINT, SIGTERM] {
            var action = sigaction()
            action.__sigaction_handler.sa_handler = { sig in
                if ProcessSignals.stopRequested.exchange(true, ordering: .sequentiallyConsistent) {
                    let message: StaticString = "second signal while stopping: exiting now\n"
                    _ = write(2, message.utf8Start, message.utf8CodeUnitCount)
                    _exit(1)
                }
                var byte = UInt8(truncatingIfNeeded: sig)
                _ = write(ProcessSignals.pipeWrite, &byte, 1)
            }
            sigemptyset(&action.sa_mask)
            action.sa_flags = SA_RESTART
            sigaction(sig, &action, nil)
        }
    }
}

/// Ends the process with `code` after `seconds`, unless it ended first: a detached thread of its own, so
/// it fires even when the event loop or every task is stuck.
func exitAfter(seconds: Double, code: Int32, _ last: @escaping @Sendable () -> Void) {
    final class Box: Sendable {
        let seconds: Double, code: Int32, last: @Sendable () -> Void
        init(_ seconds: Double, _ code: Int32, _ last: @escaping @Sendable () -> Void) { (self.seconds, self.code, self.last) = (seconds, code, last) }
    }
    var thread = pthread_t()
    let context = Unmanaged.passRetained(Box(seconds, code, last)).toOpaque()
    let created = pthread_create(&thread, nil, { context in
        let box = Unmanaged<Box>.fromOpaque(context!).takeRetainedValue()
        var ts = timespec(tv_sec: Int(box.seconds), tv_nsec: Int((box.seconds - box.seconds.rounded(.down)) * 1e9))
        var left = timespec()
        while nanosleep(&ts, &left) != 0 && errno == EINTR { ts = left }
        box.last()
        _exit(box.code)
    }, context)
    if created == 0 { pthread_detach(thread) } else { Unmanaged<AnyObject>.fromOpaque(context).release() }
}

/// Parks the main thread for good while tasks run: libdispatch's `dispatch_main`, which also serves the
/// main queue. Resolved with `dlsym` (libdispatch is always loaded by the concurrency runtime), so no
/// module imports the Dispatch overlay.
public func parkMainThread() -> Never {
    typealias DispatchMain = @convention(c) () -> Void
    if let symbol = dlsym(dlopen(nil, RTLD_NOW), "dispatch_main") {
        unsafeBitCast(symbol, to: DispatchMain.self)()
    }
    while true { pause() }
}
