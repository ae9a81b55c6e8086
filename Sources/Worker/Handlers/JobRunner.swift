import Logging
import Shared

/// Runs one claimed job and says how it ended (JobRun); storing that is
/// JobReporter's:
/// - checks the payload, finds the handler, runs it under a JobContext that
///   the control loop can stop (cancel, lost lease, shutdown) and that enforces
///   the job's timeout;
/// - sends the handler's progress on (best effort);
/// - logs the start, and a run that was stopped.
final class JobRunner {
    private let worker: WorkerContext
    private let reporter: JobReporter
    private let metrics: LoopMetrics

    init(worker: WorkerContext, reporter: JobReporter, metrics: LoopMetrics) {
        self.worker = worker
        self.reporter = reporter
        self.metrics = metrics
    }

    func run(_ claim: Claim) -> JobRun {
        let job = claim.job
        let attempt = job.attempts
        let context = JobContext(attempt: attempt, timeoutMs: job.options.timeoutMs)
        var meta = worker.metadata(job, attempt: attempt)
        worker.running.add(job, context, claimedAt: claim.sentAt, leaseMs: worker.config.leaseMs)
        defer { worker.running.remove(job.id) }
        worker.logger.info("job started", metadata: meta)
        let queueMetrics = metrics.queue(job.id.queue)
        queueMetrics.started(job)

        context.progressSink = { [reporter] progress in reporter.progress(job.id, attempt: attempt, json: progress) }
        context.onMalformedProgress = { [worker, meta] message in worker.logger.warning("\(message)", metadata: meta) }
        var warnedFullLog = false
        context.eventsSink = { [reporter, worker, meta] entries in
            if case .appended(_, let dropped)? = reporter.appendEvents(job.id, attempt: attempt, entries), dropped > 0, !warnedFullLog {
                warnedFullLog = true
                worker.logger.warning("event log full: later chunks and events of this job are dropped", metadata: meta.merging([
                    "max_events": .stringConvertible(worker.config.eventLogMaxEvents),
                    "max_bytes": .stringConvertible(worker.config.eventLogMaxBytes)]) { $1 })
            }
        }
        let started = Clock.monotonicMillis()
        let outcome = execute(job, context)
        context.markHandlerFinished()
        if context.malformedLines > JobContext.malformedLinesLogged {
            worker.logger.warning("ignored malformed progress lines", metadata: meta.merging([
                "count": .stringConvertible(context.malformedLines)]) { $1 })
        }
        context.flushEvents()
        context.flushProgress(force: true)
        let durationMs = Clock.monotonicMillis() - started
        queueMetrics.finished(durationMs: durationMs)
        meta["duration_ms"] = .stringConvertible(durationMs)

        func ended(_ ending: JobRun.Ending) -> JobRun {
            var run = JobRun(job: job, attempt: attempt, ending: ending, logMetadata: meta)
            run.usage = context.usage
            // A back-off counts only with a failure that may be retried: a
            // success is a success, a final failure final, a timeout a timeout.
            if case .failed(_, let delay) = ending, delay != nil, context.stopReason == nil {
                run.retryAfterMs = context.retryAfterMs
            }
            return run
        }
        switch context.stopReason {
        case .shutdown?:
            // Shutdown gives the job back to its queue; reporting here would race it.
            worker.logger.info("job interrupted by shutdown", metadata: meta)
            return ended(.stopped)
        case .leaseLost?:
            metrics.type(job.type).stopped.increment()
            worker.logger.warning("job result dropped: lease lost, the job was recovered elsewhere", metadata: meta)
            return ended(.stopped)
        case .leaseExpiring?:
            metrics.type(job.type).stopped.increment()
            worker.logger.warning("job stopped: its lease could not be renewed in time (Redis out of reach); it runs again after the lease expires",
                                  metadata: meta)
            return ended(.stopped)
        case .cancelled?:
            // The cancel already recorded the job's end; nothing to report.
            worker.logger.info("job stopped after cancel", metadata: meta)
            return ended(.stopped)
        default:
            break
        }
        switch outcome {
        case .success(let result):
            return ended(.succeeded(result: result))
        case .failure(let message, let retry):
            return ended(.failed(message: message,
                                 retryDelayMs: retry ? Backoff.retryDelay(baseMs: job.options.backoffMs, attempt: attempt) : nil))
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
}
