import Shared

/// A job a fetch loop now holds under a lease: what a claiming call (fetch,
/// or complete-and-fetch) hands the loop, and what the loop hands JobRunner.
/// It carries when that call was sent: Redis set the lease no earlier, so the
/// job's local lease deadline (RunningJobs, LeaseWatchdog) counts from there.
struct Claim {
    let job: Job
    /// Monotonic ms at which the claiming call was sent.
    let sentAt: Int64
    /// Claimed from the jobs parked behind its limit (it goes back to the
    /// head of that list if the limit refuses again).
    var fromParked = false
}

extension Claim {
    /// Returns the job to the head of its queue without counting the attempt
    /// (GiveBackCall); when Redis cannot be reached, it comes back when its
    /// lease expires.
    func giveBack(over redis: RedisConnection, worker: WorkerContext) {
        _ = try? redis.run(GiveBackCall(schema: worker.schema, queue: job.id.queue, workerID: worker.id,
                                        jobs: [(job.id, job.attempts)]))
    }
}
