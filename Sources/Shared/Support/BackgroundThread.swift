#if canImport(Glibc)
import Glibc
#endif

/// A plain OS thread running one closure. Worker loops block in Redis and in
/// poll(2), so they need real threads rather than a cooperative task pool.
public final class BackgroundThread {
    private var thread = pthread_t()
    private let body: () -> Void
    private let done = Latch()

    public init(name: String, stackBytes: Int = 1 << 20, _ body: @escaping () -> Void) {
        self.body = body
        var attr = pthread_attr_t()
        pthread_attr_init(&attr)
        pthread_attr_setstacksize(&attr, stackBytes)
        let me = Unmanaged.passRetained(self).toOpaque()
        let rc = pthread_create(&thread, &attr, { arg in
            let t = Unmanaged<BackgroundThread>.fromOpaque(arg!).takeRetainedValue()
            t.body()
            t.done.open()
            return nil
        }, me)
        pthread_attr_destroy(&attr)
        precondition(rc == 0, "pthread_create failed: \(rc)")
        pthread_detach(thread)
    }

    /// Waits for the thread to finish; false when it did not within the time.
    @discardableResult
    public func join(timeoutMs: Int64) -> Bool { done.wait(timeoutMs: timeoutMs) }
}

/// A one-shot gate: `wait` returns once `open` was called (or the time passed).
public final class Latch: @unchecked Sendable {  // every access is under its mutex
    private var mutex = pthread_mutex_t()
    private var cond = pthread_cond_t()
    private var isOpen = false

    public init() {
        pthread_mutex_init(&mutex, nil)
        var attr = pthread_condattr_t()
        pthread_condattr_init(&attr)
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)
        pthread_cond_init(&cond, &attr)
        pthread_condattr_destroy(&attr)
    }

    public func open() {
        pthread_mutex_lock(&mutex)
        isOpen = true
        pthread_cond_broadcast(&cond)
        pthread_mutex_unlock(&mutex)
    }


    @discardableResult
    public func wait(timeoutMs: Int64) -> Bool {
        var deadline = timespec()
        clock_gettime(CLOCK_MONOTONIC, &deadline)
        let ns = Int64(deadline.tv_nsec) + (timeoutMs % 1000) * 1_000_000
        deadline.tv_sec += Int(timeoutMs / 1000) + Int(ns / 1_000_000_000)
        deadline.tv_nsec = Int(ns % 1_000_000_000)
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        while !isOpen {
            if pthread_cond_timedwait(&cond, &mutex, &deadline) == ETIMEDOUT { return isOpen }
        }
        return true
    }
}
