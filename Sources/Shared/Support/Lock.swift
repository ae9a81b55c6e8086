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
}
