import Shared
import Synchronization

/// The jobs this worker process runs right now, shared by the fetch loops
/// (which add and remove them) and the control loop (which extends their
/// leases and stops the ones whose lease was lost).
final class RunningJobs {
    struct Entry {
        let job: Job
        let context: JobContext
        /// Monotonic ms by which the lease, as last renewed, expires: the
        /// watchdog stops the handler before it (see LeaseWatchdog).
        var leaseDeadline: Int64
    }

    private let lock = Lock()
    private var entries: [JobID: Entry] = [:]

    /// `claimedAt` (monotonic ms) is when the claiming call was sent: Redis set
    /// the lease no earlier than that.
    func add(_ job: Job, _ context: JobContext, claimedAt: Int64, leaseMs: Int64) {
        lock.locked { entries[job.id] = Entry(job: job, context: context, leaseDeadline: claimedAt + leaseMs) }
    }
    func remove(_ id: JobID) { lock.locked { _ = entries.removeValue(forKey: id) } }

    /// The lease of these jobs (this attempt) was renewed by a call sent at `sentAt`.
    func renewed(_ jobs: [(JobID, Int)], sentAt: Int64, leaseMs: Int64) {
        lock.locked {
            for (id, attempt) in jobs {
                guard var e = entries[id], e.context.attempt == attempt else { continue }
                e.leaseDeadline = max(e.leaseDeadline, sentAt + leaseMs)
                entries[id] = e
            }
        }
    }

    /// The entry of a job still running here (its id as Redis gave it).
    func entry(_ id: String) -> Entry? {
        lock.locked { entries.first(where: { $0.key.text == id })?.value }
    }
    var snapshot: [Entry] { lock.locked { Array(entries.values) } }
    var count: Int { lock.locked { entries.count } }

    /// (id, attempt) of the running jobs, grouped by queue.
    var byQueue: [String: [(JobID, Int)]] {
        Dictionary(grouping: snapshot.map { ($0.job.id, $0.context.attempt) }, by: { $0.0.queue })
    }

    func stopAll(_ reason: StopReason) {
        for e in snapshot { e.context.stop(reason) }
    }
}
