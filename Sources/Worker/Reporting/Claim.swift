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
