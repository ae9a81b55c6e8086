import Logging
import Shared

/// One of a worker's `--concurrency` loops, on its own thread with its own
/// blocking Redis connection:
/// - takes the next job from its queues in order (one script call per queue
///   tried), first the jobs parked behind a limit that may allow them now;
/// - runs a job whose limit allows it (LimitGate), parks it otherwise;
/// - runs it (JobRunner) and has its outcome stored (JobReporter, which
///   also claims the jobs);
/// - when there is nothing to do, blocks on the queues' wake lists until an
///   enqueue pushes a token, the next scheduled job is due, or a second passes;
/// - on Redis trouble, backs off with jitter and tries again; it never exits
///   until shutdown.
final class FetchLoop {
    /// Longest single block on the wake lists: bounds how long a loop takes to
    /// see shutdown, and how late it notices a job that no token announced.
    static let maxIdleWaitMs: Int64 = 1000

    private let worker: WorkerContext
    private let reporter: JobReporter
    private var redis: RedisConnection { reporter.redis }
    private let runner: JobRunner
    private var gate: LimitGate { reporter.gate }

    /// `index` numbers the loop within its worker.
    init(worker: WorkerContext, index: Int) {
        self.worker = worker
        let metrics = LoopMetrics()
        reporter = JobReporter(worker: worker, loop: index, metrics: metrics)
        runner = JobRunner(worker: worker, reporter: reporter, metrics: metrics)
    }

    func run() {
        var failures = 0
        // A job already claimed by the script that recorded the previous one.
        var next: Claim?
        // A job already claimed when shutdown began is run, not dropped.
        while next != nil || !worker.stopFetching.isSet {
            do {
                // `next` was claimed by the call that recorded the previous job
                // and already admitted by its limit (LimitGate.finish).
                if let admitted = try next ?? fetchNext().flatMap(gate.admit) {
                    next = nil
                    worker.redisHealth.succeeded()
                    let run = runner.run(admitted)
                    // A job refused by its limit is parked; the loop looks for other work.
                    next = try gate.finish(run, reporter.record(run))
                } else {
                    worker.redisHealth.succeeded()
                }
                failures = 0
            } catch {
                failures += 1
                worker.redisHealth.failed(error)
                _ = worker.stopFetching.sleep(ms: Backoff.reconnectDelay(failures: failures))
            }
        }
        redis.disconnect()
    }

    /// What the fetch sent behind the last wait found (see waitForWork), if
    /// it has not been used yet: the first queue's fetch of the next look.
    private var fetchedAfterWait: JobReporter.Fetched?

    /// A job to run, or nil after waiting idle for work.
    private func fetchNext() throws -> Claim? {
        var waitMs = FetchLoop.maxIdleWaitMs
        for queue in 0..<reporter.queueCount {
            // (Never a claim: waitForWork's caller takes that at once, below.)
            let early = queue == 0 ? fetchedAfterWait : nil
            fetchedAfterWait = nil
            if let claim = try claimParked(queue: queue) { return claim }
            switch try early ?? reporter.fetch(queue: queue) {
            case .claimed(let claim):
                return claim
            case .failedDamaged:
                return nil
            case .nothing(let nextDue):
                if let due = nextDue { waitMs = min(waitMs, due) }
            case .paused:
                continue
            }
        }
        let parkedWaitMs = worker.parked.nextReadyInMs() ?? FetchLoop.maxIdleWaitMs
        try waitForWork(ms: min(waitMs, max(1, parkedWaitMs)), scheduledJobDue: waitMs < FetchLoop.maxIdleWaitMs && waitMs <= parkedWaitMs)
        // A job the fetch behind the wait claimed runs now (one claimed as
        // shutdown began was given back in waitForWork).
        if case .claimed(let claim)? = fetchedAfterWait {
            fetchedAfterWait = nil
            return claim
        }
        return nil
    }

    /// A job parked behind a limit in this queue that may allow it now (see
    /// ParkedLimits); nil when there is none.
    private func claimParked(queue index: Int) throws -> Claim? {
        let queue = worker.config.queues[index]
        for limit in worker.parked.ready(in: queue) {
            switch try reporter.fetchParked(queue: index, limit: limit) {
            case .claimed(let claim): return claim
            case .failedDamaged: continue
            case .nothing: worker.parked.drained(ParkedLimits.Place(queue: queue, limit: limit))
            case .paused: return nil
            }
        }
        return nil
    }

    /// Waits for work: on the wake lists, or (when a scheduled job is due
    /// before then and no other loop is already waiting for it) on a local
    /// timer until that job's time — see DueTimer.
    private func waitForWork(ms: Int64, scheduledJobDue: Bool) throws {
        guard ms > 0, !worker.stopFetching.isSet else { return }
        var blockMs = ms
        if scheduledJobDue {
            let dueAt = Clock.monotonicMillis() + ms
            if worker.dueTimer.claim(dueAt, waitMs: ms) {
                _ = worker.stopFetching.sleep(ms: ms)
                worker.dueTimer.release(dueAt)
                return
            }
            // Not the timekeeper: block in Redis only until shortly before the
            // job is due (Redis may answer up to a tick late), then come back
            // and claim the rest of the wait with the precise local timer.
            if ms > DueTimer.deafWaitMaxMs { blockMs = ms - DueTimer.deafWaitMaxMs }
        }
        worker.dueTimer.startListening()
        defer { worker.dueTimer.stopListening() }
        if let board = worker.clusterWake { return board.waitForToken(ms: blockMs, stop: worker.stopFetching) }
        let keys = worker.config.queues.map { worker.schema.wake($0) }
        let wait = ["BLPOP"] + keys + [format3(blockMs)]
        guard fetchesBehindWait(blockMs: blockMs) else {
            let reply = try redis.blockingCommand(wait, blockingMs: Int(blockMs))
            if case .error(let e) = reply { throw RedisError.server(e) }
            _ = noteToken(reply, keys: keys)
            return
        }
        // The fetch rides behind the wait: a token's job is claimed in the same
        // instant, with no round trip after the wake (issue 18's latency).
        var waitError: String?
        var limitToken = false
        let fetched = try reporter.fetchAfterWait(wait, blockingMs: Int(blockMs), queue: 0) { reply in
            if case .error(let e) = reply { waitError = e } else { limitToken = noteToken(reply, keys: keys) }
        }
        if case .claimed(let claim)? = fetched {
            // Claimed as shutdown began: no new work is taken, it goes back.
            // Claimed with a release's token: the jobs parked behind that
            // limit go first, as they would after a plain wake.
            if worker.stopFetching.isSet || limitToken { return claim.giveBack(over: redis, worker: worker) }
            // The job runs; the wait's own error, if any, no longer matters.
            fetchedAfterWait = fetched
            return
        }
        if let e = waitError { throw RedisError.server(e) }
        fetchedAfterWait = fetched
    }

    /// A release's token names its limit: that queue's parked jobs may run.
    /// Returns whether the token named one.
    private func noteToken(_ reply: RedisReply, keys: [String]) -> Bool {
        guard let parts = reply.array, parts.count == 2, let limit = ParkedLimits.limit(inToken: parts[1].string),
              let index = keys.firstIndex(of: parts[0].string ?? "") else { return false }
        worker.parked.wake(ParkedLimits.Place(queue: worker.config.queues[index], limit: limit))
        return true
    }

    /// Whether this wait carries the first queue's fetch behind it:
    /// - only with one queue (with several, the token may be another queue's,
    ///   and the first queue's jobs come first anyway);
    /// - while no job of this worker is parked behind a limit (a release's
    ///   token must let a parked job run first; should one come anyway, the
    ///   claimed job is given back);
    /// - for a wait of at most a tenth of the lease, since the claimed job's
    ///   lease is counted from the send (with a lease under 10 s the idle
    ///   waits of a second go without).
    private func fetchesBehindWait(blockMs: Int64) -> Bool {
        reporter.queueCount == 1 && worker.parked.nextReadyInMs() == nil && blockMs <= worker.config.leaseMs / 10
    }

    /// Milliseconds as seconds with three decimals, as BLPOP takes them.
    private func format3(_ ms: Int64) -> String {
        let frac = ms % 1000
        return "\(ms / 1000)." + String(repeating: "0", count: 3 - String(frac).count) + String(frac)
    }
}
