#if canImport(Glibc)
import Glibc
#endif

/// A mutex for the little state that worker threads share.
/// `@unchecked Sendable`: the mutex is what makes sharing it across threads safe.
public final class Lock: @unchecked Sendable {
    private var mutex = pthread_mutex_t()

    public init() { pthread_mutex_init(&mutex, nil) }
    deinit { pthread_mutex_destroy(&mutex) }

    @discardableResult
    public func locked<T>(_ body: () throws -> T) rethrows -> T {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return try body()
    }

    /// For code that must let go of the lock in the middle (see
    /// CompletionBatcher); prefer `locked` everywhere else.
    public func lock() { pthread_mutex_lock(&mutex) }
    public func unlock() { pthread_mutex_unlock(&mutex) }

    /// Waits for `condition` to be signalled: releases the lock meanwhile and
    /// holds it again on return. Call with the lock held, in a loop that
    /// re-checks what it waits for (wake-ups can be spurious).
    public func wait(_ condition: Condition) {
        pthread_cond_wait(&condition.cond, &mutex)
    }

    /// Like `wait`, for at most `timeoutMs`; false when the time ran out.
    @discardableResult
    public func wait(_ condition: Condition, timeoutMs: Int64) -> Bool {
        var deadline = timespec()
        clock_gettime(CLOCK_MONOTONIC, &deadline)
        let ns = Int64(deadline.tv_nsec) + (timeoutMs % 1000) * 1_000_000
        deadline.tv_sec += Int(timeoutMs / 1000) + Int(ns / 1_000_000_000)
        deadline.tv_nsec = Int(ns % 1_000_000_000)
        return pthread_cond_timedwait(&condition.cond, &mutex, &deadline) != ETIMEDOUT
    }
}

/// A condition variable to wait on with a `Lock` held (`Lock.wait`).
public final class Condition: @unchecked Sendable {
    fileprivate var cond = pthread_cond_t()

    /// On the monotonic clock, so a timed wait ignores changes of the wall clock.
    public init() {
        var attr = pthread_condattr_t()
        pthread_condattr_init(&attr)
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)
        pthread_cond_init(&cond, &attr)
        pthread_condattr_destroy(&attr)
    }
    deinit { pthread_cond_destroy(&cond) }

    /// Wakes one thread waiting on it.
    public func signal() { pthread_cond_signal(&cond) }
    /// Wakes every thread waiting on it.
    public func broadcast() { pthread_cond_broadcast(&cond) }
}
