import Shared
import Synchronization

/// Server-sent events for the dashboard (`GET /api/events`): runner state changes, registry changes and
/// metric ticks, fanned out to every subscriber. Each subscriber has a bounded queue: a client that does
/// not keep up loses the oldest events rather than growing memory.
final class EventHub: Sendable {
    final class Subscriber: Sendable {
        struct State {
            var events: [[UInt8]] = []
            var waiter: CheckedContinuation<Void, Never>?
        }
        static let maxQueued = 256
        let state = Mutex(State())

        func push(_ event: [UInt8]) {
            let waiter = state.withLock { s -> CheckedContinuation<Void, Never>? in
                s.events.append(event)
                if s.events.count > Self.maxQueued { s.events.removeFirst(s.events.count - Self.maxQueued) }
                defer { s.waiter = nil }
                return s.waiter
            }
            waiter?.resume()
        }

        private func wake() {
            state.withLock { s -> CheckedContinuation<Void, Never>? in
                defer { s.waiter = nil }
                return s.waiter
            }?.resume()
        }

        /// The queued events, waiting up to `seconds` for one (empty: time for a heartbeat).
        func next(loop: EventLoop, seconds: Double) async -> [[UInt8]] {
            var timer: UInt64 = 0
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                let ready = state.withLock { s -> Bool in
                    if !s.events.isEmpty { return true }
                    s.waiter = c
                    return false
                }
                if ready {
                    c.resume()
                } else {
                    timer = loop.schedule(at: deadline(after: seconds)) { [self] in wake() }
                }
            }
            if timer != 0 { loop.cancelTimer(timer) }
            return state.withLock { s in
                defer { s.events = [] }
                return s.events
            }
        }
    }

    private let subscribers = Mutex<(next: UInt64, all: [UInt64: Subscriber])>((0, [:]))

    var count: Int { subscribers.withLock { $0.all.count } }

    func subscribe() -> (UInt64, Subscriber) {
        let s = Subscriber()
        let id = subscribers.withLock { t -> UInt64 in
            t.next += 1
            t.all[t.next] = s
            return t.next
        }
        return (id, s)
    }

    func unsubscribe(_ id: UInt64) { _ = subscribers.withLock { $0.all.removeValue(forKey: id) } }

    /// Encodes once, queues for everyone.
    func publish(_ event: String, _ data: JSONValue) {
        let bytes = SSEEvent(event: event, data: JSONWriter.write(data, pretty: false)).encoded()
        for s in subscribers.withLock({ Array($0.all.values) }) { s.push(bytes) }
    }
}
