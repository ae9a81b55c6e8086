import Logging
import Shared

/// Stops jobs whose lease is about to expire unrenewed, on its own thread.
///
/// Why: the control loop renews leases, but while Redis is out of reach its
/// calls hang up to the Redis timeout and then fail. Meanwhile the lease runs
/// out in Redis, another worker's recovery hands the job out again, and the
/// job would run twice at once. This thread touches no Redis: it compares
/// each running job's local lease deadline (moved forward by every renewal
/// that returned, see RunningJobs) with the clock, and stops the handler
/// (SIGTERM, SIGKILL after the kill grace) `guardMs` before the deadline.
final class LeaseWatchdog {
    private let worker: WorkerContext
    private let stopped = StopFlag()
    /// How long before the local deadline the handler is told to stop: the
    /// kill grace plus `marginMs`, at most a sixth of the lease (healthy
    /// renewals keep the deadline at least half a lease ahead).
    let guardMs: Int64
    /// Left for clocks and scheduling: the handler is SIGKILLed this long
    /// before the deadline at the latest, cutting a long kill grace short.
    let marginMs: Int64
    let intervalMs: Int64

    init(worker: WorkerContext) {
        self.worker = worker
        let lease = worker.config.leaseMs
        marginMs = max(100, lease / 20)
        guardMs = min(worker.config.childLimits.killGraceMs + marginMs, lease / 6)
        intervalMs = max(20, min(250, lease / 20))
    }

    func run() {
        repeat { check() } while !stopped.sleep(ms: intervalMs)
    }

    func stop() { stopped.set() }

    private func check() {
        let now = Clock.monotonicMillis()
        for e in worker.running.snapshot where !e.context.handlerFinished && e.leaseDeadline - guardMs <= now {
            guard e.context.stopReason == nil else { continue }
            worker.logger.warning("lease about to expire unrenewed (Redis out of reach?); stopping the job so that it does not run twice",
                                  metadata: worker.metadata(e.job, attempt: e.context.attempt).merging([
                                      "lease_left_ms": .stringConvertible(max(0, e.leaseDeadline - now)),
                                  ]) { $1 })
            e.context.stop(.leaseExpiring, killBy: e.leaseDeadline - marginMs)
        }
    }
}
