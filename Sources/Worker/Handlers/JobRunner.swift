import Logging
import Shared

/// Runs one fetched job and records how it ended:
/// - checks the payload, finds the handler, runs it under a JobContext that
///   the control loop can stop (cancel, lost lease, shutdown) and that enforces
///   the job's timeout;
/// - stores success or failure with a script that only acts while this worker
///   still holds the lease, so a late result of a recovered job is dropped;
/// - writes one log line per outcome.
final class JobRunner {
    /// Longest error message stored with a job.
    static let maxErrorBytes = 4096

    private let worker: WorkerContext
    private let connection: ClaimingConnection
    private var redis: RedisConnection { connection.redis }
    /// This loop's metric handles by queue (see WorkerMetrics).
    private var metricHandles: [String: WorkerMetrics.QueueHandles] = [:]
    /// This loop's outcome handles by job type.
    private var typeHandles: [String: WorkerMetrics.TypeHandles] = [:]

    init(worker: WorkerContext, connection: ClaimingConnection) {
        self.worker = worker
        self.connection = connection
    }

    /// Runs the claimed job and records its outcome. After a success in the
    /// worker's first queue, the same script call also claims the loop's next
    /// job: that claim is returned.
    func run(_ claim: Claim) -> Claim? {
        let job = claim.job
        let attempt = job.attempts
        let context = JobContext(attempt: attempt, timeoutMs: job.options.timeoutMs)
        let meta = worker.metadata(job, attempt: attempt)
        worker.running.add(job, context, claimedAt: claim.sentAt, leaseMs: worker.config.leaseMs)
        defer { worker.running.remove(job.id) }
        worker.logger.info("job started", metadata: meta)
        let metrics = self.metrics(job.id.queue)
        metrics.started(job)

        context.progressSink = { [redis, worker] progress in
            // Best effort: a lost progress update is replaced by the next one.
            _ = try? redis.run(ProgressCall(schema: worker.schema, jobID: job.id, workerID: worker.id,
                                            attempt: attempt, progressJSON: progress))
        }
        context.onMalformedProgress = { [worker] message in worker.logger.warning("\(message)", metadata: meta) }
        let started = Clock.monotonicMillis()
        let outcome = execute(job, context)
        context.markHandlerFinished()
        if context.malformedLines > JobContext.malformedLinesLogged {
            worker.logger.warning("ignored malformed progress lines", metadata: meta.merging([
                "count": .stringConvertible(context.malformedLines)]) { $1 })
        }
        context.flushProgress(force: true)
        let durationMs = Clock.monotonicMillis() - started
        metrics.finished(durationMs: durationMs)
        var meta2 = meta
        meta2["duration_ms"] = .stringConvertible(durationMs)

        switch context.stopReason {
        case .shutdown?:
            // Shutdown gives the job back to its queue; reporting here would race it.
            worker.logger.info("job interrupted by shutdown", metadata: meta2)
            return nil
        case .leaseLost?:
            typeMetrics(job.type).stopped.increment()
            worker.logger.warning("job result dropped: lease lost, the job was recovered elsewhere", metadata: meta2)
            return nil
        case .leaseExpiring?:
            typeMetrics(job.type).stopped.increment()
            worker.logger.warning("job stopped: its lease could not be renewed in time (Redis out of reach); it runs again after the lease expires",
                                  metadata: meta2)
            return nil
        case .cancelled?:
            // The cancel already recorded the job's end; nothing to report.
            worker.logger.info("job stopped after cancel", metadata: meta2)
            return nil
        default:
            break
        }
        switch outcome {
        case .success(let result):
            return complete(job, attempt: attempt, result: result, meta: meta2)
        case .failure(let message, let retry):
            fail(job.id, attempt: attempt, message: message,
                 retryDelayMs: retry ? Backoff.retryDelay(baseMs: job.options.backoffMs, attempt: attempt) : nil, meta: meta2)
            return nil
        }
    }

    private func execute(_ job: Job, _ context: JobContext) -> HandlerOutcome {
        guard (try? JSONParser.parse(job.payload)) != nil else {
            return .failure("job payload in Redis is not valid JSON (the job hash was damaged)", retry: false)
        }
        guard let handler = worker.handlers[job.type] else {
            let known = worker.handlers.keys.sorted().joined(separator: ", ")
            return .failure("no handler for job type '\(job.type)' on worker \(worker.id) (it has: \(known))", retry: true)
        }
        return handler.run(job, context)
    }

    /// Records a success; when the job's queue is the first one (and the
    /// worker is not stopping), the call also claims the loop's next job.
    private func complete(_ job: Job, attempt: Int, result: String, meta: Logger.Metadata) -> Claim? {
        let call = CompleteCall(schema: worker.schema, jobID: job.id, workerID: worker.id, attempt: attempt, resultJSON: result)
        var next: Claim?
        let stored: Bool
        if job.id.queue == worker.completions.queue && !worker.stopFetching.isSet {
            guard let both = report(meta: meta, { try worker.completions.complete(call, via: connection) }) else { return nil }
            stored = both.stored
            switch both.next {
            case .job(let j)?: next = Claim(job: j, sentAt: both.sentAt)
            case .damaged(let id, let attempt, let error)?: failDamaged(id, attempt: attempt, error: error)
            case .empty?, .paused?, nil: break
            }
        } else {
            guard let s = report(meta: meta, { try redis.run(call) }) else { return nil }
            stored = s
        }
        logCompletion(stored: stored, job: job, meta: meta)
        return next
    }

    private func logCompletion(stored: Bool, job: Job, meta: Logger.Metadata) {
        if stored {
            worker.counters.recordSuccess()
            metrics(job.id.queue).succeeded()
            typeMetrics(job.type).succeeded.increment()
            worker.logger.info("job succeeded", metadata: meta)
        } else {
            worker.logger.warning("job result dropped: lease lost, the job was recovered elsewhere", metadata: meta)
        }
    }

    func fail(_ id: JobID, attempt: Int, message: String, retryDelayMs: Int64?, meta: Logger.Metadata) {
        let text = JobRunner.shortened(message)
        let call = FailCall(schema: worker.schema, jobID: id, workerID: worker.id, attempt: attempt,
                            errorJSON: Job.errorJSON(message: text, attempt: attempt), retryDelayMs: retryDelayMs,
                            deadTTLSeconds: worker.config.deadTTLSeconds, deadMax: worker.config.deadMax)
        guard let outcome = report(meta: meta, { try redis.run(call) }) else { return }
        metrics(id.queue).failed(outcome)
        if let type = meta["type"].map({ "\($0)" }) {
            switch outcome {
            case .retry: typeMetrics(type).retried.increment()
            case .dead: typeMetrics(type).dead.increment()
            case .stale: break
            }
        }
        var m = meta
        m["error"] = "\(text)"
        switch outcome {
        case .retry:
            worker.counters.recordFailure()
            m["retry_in_ms"] = .stringConvertible(retryDelayMs ?? 0)
            worker.logger.warning("job failed; retry scheduled", metadata: m)
        case .dead:
            worker.counters.recordFailure()
            worker.logger.error("job failed; no attempts left, moved to dead", metadata: m)
        case .stale:
            worker.logger.warning("job failure dropped: lease lost, the job was recovered elsewhere", metadata: m)
        }
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

    /// A job whose hash could not be read: fail it for good, with the reason.
    func failDamaged(_ id: JobID, attempt: Int, error: String) {
        let meta: Logger.Metadata = ["job_id": "\(id)", "queue": "\(id.queue)", "attempt": .stringConvertible(attempt),
                                     "worker_id": "\(worker.id)"]
        fail(id, attempt: attempt, message: "job hash in Redis is damaged: \(error)", retryDelayMs: nil, meta: meta)
    }

    private func typeMetrics(_ type: String) -> WorkerMetrics.TypeHandles {
        if let h = typeHandles[type] { return h }
        let h = WorkerMetrics.type(type)
        typeHandles[type] = h
        return h
    }

    private func metrics(_ queue: String) -> WorkerMetrics.QueueHandles {
        if let h = metricHandles[queue] { return h }
        let h = WorkerMetrics.queue(queue)
        metricHandles[queue] = h
        return h
    }

    /// Runs a reporting script, retrying through a Redis outage for up to one
    /// lease: past that the job has been recovered and the report is moot.
    private func report<Output>(meta: Logger.Metadata, _ send: () throws -> Output) -> Output? {
        worker.redisHealth.retrying(until: Clock.monotonicMillis() + worker.config.leaseMs, send) { error in
            var m = meta
            m["error"] = "\(error)"
            worker.logger.error("could not record the job's outcome; it will run again after its lease", metadata: m)
        }
    }
}
