import Synchronization

/// Counters a worker reports in its registry entry and health endpoint.
/// Atomics, not a lock: every loop bumps them for every job.
final class WorkerCounters {
    private let processedCount = Atomic<Int64>(0)
    private let failedCount = Atomic<Int64>(0)

    func recordSuccess() { processedCount.add(1, ordering: .relaxed) }
    func recordFailure() { failedCount.add(1, ordering: .relaxed) }
    var processed: Int64 { processedCount.load(ordering: .relaxed) }
    var failed: Int64 { failedCount.load(ordering: .relaxed) }
}
