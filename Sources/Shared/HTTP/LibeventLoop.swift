import CLibevent

/// One libevent loop (an `event_base`): the API's event loops and the
/// worker's health port run on these. It is the one type outside Shared's
/// HTTP and Redis code that touches libevent, so the API and the worker see
/// no C pointer: listeners and Redis connections attach to a loop, timers and
/// cross-thread calls go through it.
public final class LibeventLoop: @unchecked Sendable {
    /// Internal: HTTPListener and AsyncRedisConnection attach their events to it.
    let base: OpaquePointer

    /// Lets loops be used from several threads (`perform`, `stop`). Call once
    /// at start, before any loop is made.
    public static func enableThreads() { evthread_use_pthreads() }

    /// A loop with epoll's change list on: an event added and removed within
    /// one pass of the loop (a write that completes at once) costs no
    /// epoll_ctl system call.
    public init() throws {
        let cfg = event_config_new()
        defer { if let cfg { event_config_free(cfg) } }
        if let cfg { event_config_set_flag(cfg, Int32(EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST.rawValue)) }
        guard let base = cfg.flatMap({ event_base_new_with_config($0) }) ?? event_base_new() else {
            throw LoopError(description: "could not create an event loop")
        }
        self.base = base
    }

    /// Runs the loop on the calling thread until `stop`.
    public func run() { event_base_dispatch(base) }

    /// Ends `run` after the current pass; from any thread.
    public func stop() { event_base_loopexit(base, nil) }

    /// Runs `block` on the loop's thread, soon; from any thread.
    public func perform(_ block: @escaping () -> Void) {
        let box = Unmanaged.passRetained(Block(block)).toOpaque()
        var now = timeval(tv_sec: 0, tv_usec: 0)
        let rc = event_base_once(base, -1, Int16(EV_TIMEOUT), { _, _, arg in
            Unmanaged<Block>.fromOpaque(arg!).takeRetainedValue().run()
        }, box, &now)
        // Fails only without memory; the block then does not run.
        if rc != 0 { Unmanaged<Block>.fromOpaque(box).release() }
    }

    /// Runs `block` on the loop's thread after `milliseconds`; from the loop's thread.
    public func after(milliseconds: Int, _ block: @escaping () -> Void) {
        let box = Unmanaged.passRetained(Block(block)).toOpaque()
        var tv = timeval(tv_sec: milliseconds / 1000, tv_usec: (milliseconds % 1000) * 1000)
        let rc = event_base_once(base, -1, Int16(EV_TIMEOUT), { _, _, arg in
            Unmanaged<Block>.fromOpaque(arg!).takeRetainedValue().run()
        }, box, &tv)
        if rc != 0 { Unmanaged<Block>.fromOpaque(box).release() }
    }

    /// Calls `block` on the loop's thread every `milliseconds`, for as long as
    /// the returned timer is kept.
    public func every(milliseconds: Int, _ block: @escaping () -> Void) -> RepeatingTimer {
        RepeatingTimer(base: base, milliseconds: milliseconds, block)
    }

    public struct LoopError: Error, CustomStringConvertible {
        public let description: String
    }

    private final class Block {
        let run: () -> Void
        init(_ run: @escaping () -> Void) { self.run = run }
    }
}

/// A persistent libevent timer; stops when released.
public final class RepeatingTimer {
    private var event: OpaquePointer?
    private let block: () -> Void

    fileprivate init(base: OpaquePointer, milliseconds: Int, _ block: @escaping () -> Void) {
        self.block = block
        event = event_new(base, -1, Int16(EV_PERSIST), { _, _, arg in
            Unmanaged<RepeatingTimer>.fromOpaque(arg!).takeUnretainedValue().block()
        }, Unmanaged.passUnretained(self).toOpaque())
        var tv = timeval(tv_sec: milliseconds / 1000, tv_usec: (milliseconds % 1000) * 1000)
        event_add(event, &tv)
    }

    deinit {
        if let event { event_free(event) }
    }
}
