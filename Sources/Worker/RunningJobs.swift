import Shared

/// The jobs this worker process runs right now, shared by the fetch loops
/// (which add and remove them) and the control loop (which extends their
/// leases and stops the ones whose lease was lost).
final class RunningJobs {
    struct Entry {
        let job: Job
        let context: JobContext
    }

    private let lock = Lock()
    private var entries: [JobID: Entry] = [:]

    func add(_ job: Job, _ context: JobContext) { lock.locked { entries[job.id] = Entry(job: job, context: context) } }
    func remove(_ id: JobID) { lock.locked { _ = entries.removeValue(forKey: id) } }
    var snapshot: [Entry] { lock.locked { Array(entries.values) } }
    var count: Int { lock.locked { entries.count } }

    /// (id, attempt) of the running jobs, grouped by queue.
    var byQueue: [String: [(JobID, Int)]] {
        Dictionary(grouping: snapshot.map { ($0.job.id, $0.context.attempt) }, by: { $0.0.queue })
    }

    func stop(_ id: String, _ reason: StopReason) {
        lock.locked { entries.first(where: { $0.key.text == id })?.value.context.stop(reason) }
    }

    func stopAll(_ reason: StopReason) {
        for e in snapshot { e.context.stop(reason) }
    }
}

/// Counters a worker reports in its registry entry and health endpoint.
final class WorkerCounters {
    private let lock = Lock()
    private var processedCount: Int64 = 0
    private var failedCount: Int64 = 0

    func recordSuccess() { lock.locked { processedCount += 1 } }
    func recordFailure() { lock.locked { failedCount += 1 } }
    var processed: Int64 { lock.locked { processedCount } }
    var failed: Int64 { lock.locked { failedCount } }
}

/// A flag that many threads read and one sets.
final class StopFlag {
    private let gate = Latch()
    func set() { gate.open() }
    var isSet: Bool { gate.opened }
    /// Sleeps up to `ms`; returns early (true) once the flag is set.
    func sleep(ms: Int64) -> Bool { gate.wait(timeoutMs: ms) }
}
