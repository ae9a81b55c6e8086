/// Decides when a repeated event is logged: the first of a key at once, then
/// at most once per key per interval, with how many occurred since the last
/// line. An outage or a flood of bad requests stays visible in the log
/// without filling it. Safe from any thread.
public final class LogThrottle<Key: Hashable>: @unchecked Sendable {  // every access is under `lock`
    public let intervalMs: Int64
    private let lock = Lock()
    private var lastLogged: [Key: Int64] = [:]
    private var since: [Key: Int] = [:]

    public init(intervalMs: Int64 = 10_000) { self.intervalMs = intervalMs }

    /// Counts one occurrence of `key`. Returns how many occurred since the
    /// last line (this one included) when it is time to log one, else nil.
    public func occurred(_ key: Key) -> Int? {
        let now = Clock.monotonicMillis()
        return lock.locked {
            since[key, default: 0] += 1
            if let last = lastLogged[key], now - last < intervalMs { return nil }
            lastLogged[key] = now
            return since.removeValue(forKey: key)
        }
    }
}
