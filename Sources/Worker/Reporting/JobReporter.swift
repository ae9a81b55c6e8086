import Logging
import Shared

/// Everything one fetch loop tells Redis about jobs, on the loop's own
/// connection: the claims of its next jobs, and how the jobs it ran ended.
/// The one owner of:
/// - the claiming connection: every call that claims jobs (fetch,
///   complete-and-fetch) carries a new token and leaves a receipt, so that a
///   lost reply can be settled (the receipt protocol below, in
///   JobReporter+Receipts.swift);
/// - the batching: successes go through their queue's CompletionBatcher,
///   which sends those of several loops in one call; in the worker's first
///   queue that call also claims each of those loops its next job
///   (`CompletionBatcher.claimsNextJobs`), elsewhere it only records, because
///   a claim there would jump ahead of the first queue's jobs;
/// - the retry policy: an outcome is retried through a Redis outage for up to
///   one lease from now; past that the job has been recovered and the report
///   is moot (dropped, and logged).
///
/// The receipt protocol, when the reply of a claiming call is lost (the
/// connection broke or timed out after the call was sent, so it may have run):
/// 1. the call, with token n, ran or did not; if it ran, it wrote the receipt
///    "n <stored flags> <id> <attempt> ..." (kept one lease);
/// 2. the reporter reconnects and settles n (SettleCall): if the receipt names
///    n, the call ran: the jobs it claimed, which no loop knows of, go back to
///    the head of their queue without counting the attempt, and the stored
///    flags of its completions come back; if not, the receipt becomes
///    "n void", a fence: should the call still arrive, it changes nothing;
/// 3. a call that ran and carried completions is answered with those flags
///    (sending it again would find them stored and call them stale); any
///    other is sent again, with token n + 1;
/// 4. after `maxSends` lost replies, or at shutdown, the error goes to the
///    loop, which backs off; while Redis stays out of reach past one lease
///    from the send, settling gives up and the claims come back when their
///    lease expires (recovery).
final class JobReporter {
    /// Longest error message stored with a job.
    static let maxErrorBytes = 4096
    /// Sends at most this many times when replies keep getting lost (each
    /// settled in between).
    static let maxSends = 3

    /// The loop's connection (the loop also blocks on it for wake tokens).
    let redis: RedisConnection
    let worker: WorkerContext
    private let metrics: LoopMetrics
    /// One fetch call per queue, in the worker's order, built once.
    let fetchCalls: [FetchCall]
    /// Calls sent so far: the last token used (each call takes the next).
    var sent: UInt64 = 0
    /// The limits of the jobs this loop runs (its connection).
    private(set) lazy var gate = LimitGate(worker: worker, redis: redis)
    /// When the call whose answer was returned last was sent (monotonic ms):
    /// the leases of the jobs it claimed started no earlier.
    var lastSentAt: Int64 = 0

    /// `loop` numbers the loop within its worker (it names the receipt).
    init(worker: WorkerContext, loop: Int, metrics: LoopMetrics) {
        self.worker = worker
        self.metrics = metrics
        redis = worker.newConnection()
        fetchCalls = worker.config.queues.map {
            FetchCall(schema: worker.schema, queue: $0, workerID: worker.id, leaseMs: worker.config.leaseMs,
                      loop: String(loop))
        }
    }

    var queueCount: Int { fetchCalls.count }

    /// What looking for a job in one queue found.
    enum Fetched {
        case claimed(Claim)
        /// A job whose hash was damaged was claimed and failed for good: look again.
        case failedDamaged
        /// Nothing to run; `nextDueInMs`: when the next scheduled job is due (nil: none).
        case nothing(nextDueInMs: Int64?)
        case paused
    }

    /// Claims the next job of the worker's queue number `index`.
    func fetch(queue index: Int) throws -> Fetched {
        // After a lost reply the call is settled (what it claimed given back),
        // then sent again.
        fetched(try sendClaiming(fetchCalls[index], { $0 }, answerIfRan: { _ in nil }))
    }

    /// Blocks on `wake` (BLPOP of the wake lists, up to `blockingMs`) with the
    /// fetch of the worker's queue number `index` sent behind it, so that the
    /// fetch runs in Redis as soon as the wait ends, without a round trip of
    /// its own. `onWake` gets the wait's reply first, whatever the fetch did.
    /// Returns what the fetch found; nil when it did not run, or its reply was
    /// lost and settled (the loop then fetches as usual).
    func fetchAfterWait(_ wake: [String], blockingMs: Int, queue index: Int,
                        onWake: (RedisReply) -> Void) throws -> Fetched? {
        try sendClaimingAfterWait(wake, blockingMs: blockingMs, fetchCalls[index], onWake: onWake).map(fetched)
    }

    private func fetched(_ output: FetchCall.Output) -> Fetched {
        switch output {
        case .job(let job): return .claimed(Claim(job: job, sentAt: lastSentAt))
        case .damaged(let id, let attempt, let error):
            failDamaged(id, attempt: attempt, error: error)
            return .failedDamaged
        case .empty(let due): return .nothing(nextDueInMs: due)
        case .paused: return .paused
        }
    }

    /// Claims the oldest job of the queue parked behind `limit` (the loop
    /// asks only when the limit may allow it now: ParkedLimits).
    func fetchParked(queue index: Int, limit: String) throws -> Fetched {
        var call = fetchCalls[index]
        call.parkedLimit = limit
        switch try sendClaiming(call, { $0 }, answerIfRan: { _ in nil }) {
        case .job(let job): return .claimed(Claim(job: job, sentAt: lastSentAt, fromParked: true))
        case .damaged(let id, let attempt, let error):
            failDamaged(id, attempt: attempt, error: error)
            return .failedDamaged
        case .empty(let due): return .nothing(nextDueInMs: due)
        case .paused: return .paused
        }
    }

    /// What recording a run gives the loop: the job the same call claimed
    /// for it, if any, and what a batch's leader already did about limits.
    struct Recorded {
        var next: Claim?
        /// The run's limit slot was given back with the batch.
        var released = false
        /// `next` was admitted by its limit (or parked: then it is nil).
        var nextAdmitted = false
    }

    /// Stores how a run ended and logs it. Returns the job that the same call
    /// claimed for this loop (successes in the first queue), if any.
    func record(_ run: JobRun) -> Recorded {
        switch run.ending {
        case .stopped:
            return Recorded()
        case .succeeded(let result):
            return complete(run, result: result)
        case .failed(let message, _) where run.retryAfterMs != nil:
            deferRun(run, message: message, delayMs: run.retryAfterMs ?? 0)
            return Recorded()
        case .failed(let message, let retryDelayMs):
            fail(run.job.id, type: run.job.type, attempt: run.attempt, message: message, retryDelayMs: retryDelayMs,
                 meta: run.logMetadata)
            return Recorded()
        }
    }

    /// Stores a handler's progress; best effort: a lost update is replaced by the next one.
    func progress(_ id: JobID, attempt: Int, json: String) {
        var call = ProgressCall(schema: worker.schema, jobID: id, workerID: worker.id, attempt: attempt, progressJSON: json)
        call.maxEvents = worker.config.eventLogMaxEvents
        _ = try? redis.run(call)
    }

    /// Appends a job's streamed output to its event log, on the job's thread
    /// while its handler waits (which is the back-pressure on a handler that
    /// writes faster than Redis takes it). Best effort, like progress: an
    /// output Redis could not take is counted and the job goes on.
    func appendEvents(_ id: JobID, attempt: Int, _ entries: [AppendEventsCall.Entry]) -> AppendEventsCall.Outcome? {
        let call = AppendEventsCall(schema: worker.schema, jobID: id, workerID: worker.id, attempt: attempt, entries: entries,
                                    maxEvents: worker.config.eventLogMaxEvents, maxBytes: worker.config.eventLogMaxBytes)
        return try? redis.run(call)
    }

    private func complete(_ run: JobRun, result: String) -> Recorded {
        let job = run.job
        let call = CompleteCall(schema: worker.schema, jobID: job.id, workerID: worker.id, attempt: run.attempt,
                                resultJSON: result)
        var recorded = Recorded()
        let stored: Bool
        // At shutdown, one report of its own: a batch could claim a job.
        if let batcher = worker.completions[job.id.queue], !worker.stopFetching.isSet {
            let release = gate.batchableRelease(run)
            guard let answer = persist(meta: run.logMetadata, { try batcher.complete(call, release: release, send: sendBatch) }) else {
                return recorded
            }
            stored = answer.stored
            recorded.released = answer.released
            recorded.nextAdmitted = answer.nextAdmitted
            switch answer.next {
            case .job(let job)?: recorded.next = Claim(job: job, sentAt: answer.sentAt)
            case .damaged(let id, let attempt, let error)?: failDamaged(id, attempt: attempt, error: error)
            case .empty?, .paused?, nil: break
            }
        } else {
            guard let s = persist(meta: run.logMetadata, { try redis.run(call) }) else { return recorded }
            stored = s
        }
        if stored {
            worker.counters.recordSuccess()
            metrics.queue(job.id.queue).succeeded()
            metrics.type(job.type).succeeded.increment()
            worker.logger.info("job succeeded", metadata: run.logMetadata)
        } else {
            worker.logger.warning("job result dropped: lease lost, the job was recovered elsewhere", metadata: run.logMetadata)
        }
        return recorded
    }

    /// Sends one batch of successes of one queue (this loop leads it, see
    /// CompletionBatcher), claiming as many next jobs when the queue is the first.
    private func sendBatch(_ batcher: CompletionBatcher, _ completions: [CompleteCall],
                           _ releases: [LimitRelease?]) throws -> [CompletionBatcher.Answer] {
        guard let index = fetchCalls.firstIndex(where: { $0.queue == batcher.queue }) else {
            preconditionFailure("a batcher for a queue this worker does not serve")
        }
        // On one Redis the call itself settles the limits of the runs and of the claims.
        var limits = gate.callLimits(for: releases)
        let claimLimit = batcher.claimsNextJobs ? completions.count : 0
        let out: CompleteAndFetchCall.Output
        do {
            out = try completeAndFetch(queue: index, completions, claimLimit: claimLimit, limits: limits)
        } catch RedisError.server(let message) where limits != nil && message.hasPrefix("CROSSSLOT") {
            // Refused before it ran: a server in cluster mode. Limits go apart from now on.
            if worker.refuseLimitsInCall() {
                worker.logger.warning("Redis refused a call across slots: it runs in cluster mode; limits are called apart",
                                      metadata: ["error": "\(message)"])
            }
            limits = nil
            out = try completeAndFetch(queue: index, completions, claimLimit: claimLimit)
        }
        // Claimed jobs go to the first loops (a damaged one too: its loop
        // fails it); the others (or all, when the queue is empty or paused)
        // get none and look for work themselves.
        var claims = out.claimed.filter(\.isClaim).makeIterator()
        var answers = out.stored.map { CompletionBatcher.Answer(stored: $0, next: claims.next(), sentAt: lastSentAt) }
        var left = releases
        if let limits { left = gate.settledInCall(&answers, releases: releases, limits: limits, outcome: out.limits) }
        // What is left of the limits, a call per limit for the whole batch.
        return gate.settleBatch(answers, releases: left)
    }

    /// `type` is nil for a job whose hash could not be read.
    private func fail(_ id: JobID, type: String?, attempt: Int, message: String, retryDelayMs: Int64?, meta: Logger.Metadata) {
        let text = JobReporter.shortened(message)
        let call = FailCall(schema: worker.schema, jobID: id, workerID: worker.id, attempt: attempt,
                            errorJSON: Job.errorJSON(message: text, attempt: attempt), retryDelayMs: retryDelayMs,
                            deadTTLSeconds: worker.config.deadTTLSeconds, deadMax: worker.config.deadMax)
        guard let outcome = persist(meta: meta, { try redis.run(call) }) else { return }
        metrics.queue(id.queue).failed(outcome)
        var m = meta
        m["error"] = "\(text)"
        switch outcome {
        case .retry:
            if let type { metrics.type(type).retried.increment() }
            worker.counters.recordFailure()
            m["retry_in_ms"] = .stringConvertible(retryDelayMs ?? 0)
            worker.logger.warning("job failed; retry scheduled", metadata: m)
        case .dead:
            if let type { metrics.type(type).dead.increment() }
            worker.counters.recordFailure()
            worker.logger.error("job failed; no attempts left, moved to dead", metadata: m)
        case .stale:
            worker.logger.warning("job failure dropped: lease lost, the job was recovered elsewhere", metadata: m)
        }
    }

    /// A provider's back-off: the job runs again after `delayMs`, the attempt
    /// not counted (up to DeferCall.maxDeferrals times; then it is a failure).
    private func deferRun(_ run: JobRun, message: String, delayMs: Int64) {
        let text = JobReporter.shortened("the provider asked to retry after \(delayMs) ms: \(message)")
        let call = DeferCall(schema: worker.schema, jobID: run.job.id, workerID: worker.id, attempt: run.attempt,
                             delayMs: delayMs, errorJSON: Job.errorJSON(message: text, attempt: run.attempt))
        guard let outcome = persist(meta: run.logMetadata, { try redis.run(call) }) else { return }
        var m = run.logMetadata
        m["retry_in_ms"] = .stringConvertible(delayMs)
        switch outcome {
        case .deferred:
            metrics.type(run.job.type).deferred.increment()
            worker.logger.warning("job deferred: the provider asked to wait; the attempt is not counted", metadata: m)
        case .stale:
            worker.logger.warning("job back-off dropped: lease lost, the job was recovered elsewhere", metadata: m)
        case .tooMany:
            fail(run.job.id, type: run.job.type, attempt: run.attempt,
                 message: text + " (after \(DeferCall.maxDeferrals) back-offs the attempt counts)",
                 retryDelayMs: max(delayMs, Backoff.retryDelay(baseMs: run.job.options.backoffMs, attempt: run.attempt)),
                 meta: run.logMetadata)
        }
    }

    /// A job whose hash could not be read: fail it for good, with the reason.
    private func failDamaged(_ id: JobID, attempt: Int, error: String) {
        let meta: Logger.Metadata = ["job_id": "\(id)", "queue": "\(id.queue)", "attempt": .stringConvertible(attempt),
                                     "worker_id": "\(worker.id)"]
        fail(id, type: nil, attempt: attempt, message: "job hash in Redis is damaged: \(error)", retryDelayMs: nil,
             meta: meta)
    }

    /// A message cut to `maxErrorBytes`, keeping its start (what failed: "handler
    /// failed with exit code 7") and its end (the last lines of stderr).
    static func shortened(_ message: String) -> String {
        let bytes = Array(message.utf8)
        guard bytes.count > maxErrorBytes else { return message }
        let head = String(decoding: bytes.prefix(1024), as: UTF8.self)
        let tail = String(decoding: bytes.suffix(maxErrorBytes - 1024 - 5), as: UTF8.self)
        return head + " […] " + tail
    }

    /// The retry policy: runs an outcome's script, retrying through a Redis
    /// outage for up to one lease; past that the job has been recovered and
    /// the report is moot (nil, logged).
    private func persist<Output>(meta: Logger.Metadata, _ send: () throws -> Output) -> Output? {
        worker.redisHealth.retrying(until: Clock.monotonicMillis() + worker.config.leaseMs, send) { error in
            var m = meta
            m["error"] = "\(error)"
            worker.logger.error("could not record the job's outcome; it will run again after its lease", metadata: m)
        }
    }
}
