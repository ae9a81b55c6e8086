/// Delays between retries.
enum Backoff {
    /// Longest wait before a retry.
    static let maxRetryDelayMs: Int64 = 3_600_000

    /// Delay before retry number `attempt` (1 = after the first failure):
    /// base × 2^(attempt-1), capped at an hour, then spread by ±25% so that
    /// jobs that failed together do not all come back at the same instant.
    static func retryDelay(baseMs: Int64, attempt: Int) -> Int64 {
        guard baseMs > 0 else { return 0 }
        let exponent = min(max(attempt - 1, 0), 40)
        let raw = baseMs > maxRetryDelayMs >> exponent ? maxRetryDelayMs : min(maxRetryDelayMs, baseMs << exponent)
        let jitter = Double.random(in: 0.75...1.25)
        return min(maxRetryDelayMs, Int64(Double(raw) * jitter))
    }

    /// Wait before trying Redis again after `failures` failures in a row:
    /// 100 ms doubling to 5 s, with jitter.
    static func reconnectDelay(failures: Int) -> Int64 {
        let raw = min(5000, 100 << min(failures, 6))
        return Int64(Double(raw) * Double.random(in: 0.5...1.0))
    }
}
