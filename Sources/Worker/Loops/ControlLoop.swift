import Logging
import Shared

/// The worker's background duties, once per heartbeat on their own thread and
/// connection:
/// - extend the leases of every running job (one script call per queue) and
///   stop the jobs whose lease was lost;
/// - refresh this worker's entry in the registry of live workers;
/// - recover jobs whose lease expired anywhere in its queues (idempotent, so
///   every worker doing it is safe and no leader is needed).
final class ControlLoop {
    private let worker: WorkerContext
    private let redis: RedisConnection
    private let stopped = StopFlag()
    private var failures = 0

    init(worker: WorkerContext) {
        self.worker = worker
        self.redis = worker.newConnection()
    }

    func run() {
        repeat {
            do {
                try tick()
                failures = 0
                worker.redisHealth.succeeded()
            } catch {
                failures += 1
                worker.redisHealth.failed(error)
            }
        } while !stopped.sleep(ms: failures == 0 ? worker.config.heartbeatMs
                                                 : min(worker.config.heartbeatMs, Backoff.reconnectDelay(failures: failures)))
    }

    func stop() { stopped.set() }

    func tick() throws {
        try extendLeases()
        // Trouble on a limit's node must not hold up the heartbeat or recovery.
        do { try extendLimitHolds() } catch { worker.logger.warning("could not renew limit holds", metadata: ["error": "\(error)"]) }
        do { try findParkedJobs() } catch { worker.logger.warning("could not read the parked jobs", metadata: ["error": "\(error)"]) }
        try heartbeat()
        try recover()
        try watchMissingJobs()
    }

    /// Per queue, the count of ids found without their job hash that this
    /// process last saw (see `watchMissingJobs`).
    private var missingSeen: [String: Int64] = [:]

    /// Logs when a queue's count of ids without a job hash grew: jobs that
    /// vanished from Redis (evicted under a maxmemory policy, deleted by hand)
    /// must not go unnoticed. The fetch scripts drop such ids and count them;
    /// `spool_queue_missing_jobs_total` on the API exports the count.
    private func watchMissingJobs() throws {
        let queues = worker.config.queues
        let replies = try redis.pipeline(queues.map { ["HGET", worker.schema.stats($0), "missing"] })
        for (queue, reply) in zip(queues, replies) {
            let count = reply.int ?? 0
            let before = missingSeen[queue]
            missingSeen[queue] = count
            // The first reading is the baseline: what was counted before this
            // process started was logged by the workers that saw it happen.
            guard let before, count > before else { continue }
            worker.logger.warning("job ids found without their job hash (evicted or deleted from Redis); those jobs are lost", metadata: [
                "queue": "\(queue)", "new": .stringConvertible(count - before), "total": .stringConvertible(count),
                "worker_id": "\(worker.id)",
                "hint": "set maxmemory-policy noeviction and give Redis enough memory",
            ])
        }
    }

    /// Renews the limit holds of the running jobs, with their leases (a
    /// dead worker's holds lapse with its leases instead).
    private func extendLimitHolds() throws {
        let byLimit = Dictionary(grouping: worker.running.snapshot.flatMap { e in
            worker.limits(of: e.job).map { ($0, LimitHolder(e.job.id, attempt: e.context.attempt)) }
        }, by: { $0.0 })
        var failure: Error?
        // Each limit on its own: one limit's node in trouble does not stop the others' renewals.
        for (limit, holders) in byLimit {
            do {
                _ = try redis.run(ExtendLimitHoldsCall(schema: worker.schema, limit: limit, holdMs: worker.config.leaseMs,
                                                       holders: holders.map(\.1)))
            } catch {
                failure = error
            }
        }
        if let failure { throw failure }
    }

    /// Reads which limits have jobs parked in each queue, so that jobs parked
    /// by a worker that died (or before this one started) are found.
    private func findParkedJobs() throws {
        let queues = worker.config.queues
        let replies = try redis.pipeline(queues.map { ["SMEMBERS", worker.schema.limitedSet($0)] })
        for (queue, reply) in zip(queues, replies) {
            worker.parked.found(reply.array?.compactMap(\.string) ?? [], in: queue)
        }
        // Groups' caps apply once defined (read here, not per job).
        let defined = try redis.command(["SMEMBERS", worker.schema.limits])
        worker.definedLimits = Set(defined.array?.compactMap(\.string) ?? [])
    }

    /// A job reported "not held" whose handler already returned is not a lost
    /// lease: its own outcome report got there first (the renewal raced the
    /// completion). Only a handler still running without its lease is one.
    private func extendLeases() throws {
        for (queue, jobs) in worker.running.byQueue {
            let call = ExtendLeasesCall(schema: worker.schema, queue: queue, workerID: worker.id,
                                        leaseMs: worker.config.leaseMs, jobs: jobs)
            let sentAt = Clock.monotonicMillis()
            let lost = try redis.run(call)
            let lostIDs = Set(lost.map(\.id))
            worker.running.renewed(jobs.filter { !lostIDs.contains($0.0.text) }, sentAt: sentAt, leaseMs: worker.config.leaseMs)
            let sentAttempts = Dictionary(jobs.map { ($0.0.text, $0.1) }, uniquingKeysWith: { $1 })
            for l in lost {
                // Still running here, the same attempt the call asked about, and
                // its handler has not returned: only then was a lease lost.
                guard let entry = worker.running.entry(l.id), entry.context.attempt == sentAttempts[l.id],
                      !entry.context.handlerFinished else { continue }
                let meta: Logger.Metadata = ["job_id": "\(l.id)", "queue": "\(queue)", "worker_id": "\(worker.id)",
                                             "state": "\(l.state)"]
                if l.cancelled {
                    worker.logger.info("job cancelled; stopping its handler", metadata: meta)
                } else {
                    worker.logger.warning("lease lost; stopping the job", metadata: meta)
                }
                entry.context.stop(l.cancelled ? .cancelled : .leaseLost)
            }
        }
    }

    private func heartbeat() throws {
        let now = Clock.nowMillis()
        let ttl = worker.config.heartbeatMs * 3
        let key = worker.schema.worker(worker.id)
        var jobs = JSONWriter()
        jobs.beginArray()
        for e in worker.running.snapshot {
            jobs.beginObject()
            jobs.field("id", e.job.id.text)
            jobs.field("queue", e.job.id.queue)
            jobs.field("type", e.job.type)
            jobs.field("attempt", e.context.attempt)
            jobs.field("started_at", e.job.startedUs.map(Timestamp.format(micros:)))
            jobs.endObject()
        }
        jobs.endArray()
        let replies = try redis.pipeline([
            ["HSET", key, "id", worker.id, "host", WorkerIdentity.hostname, "pid", String(WorkerIdentity.pid),
             "queues", worker.config.queues.joined(separator: ","), "concurrency", String(worker.config.concurrency),
             "started_at", String(worker.startedAt), "last_heartbeat", String(now),
             "processed", String(worker.counters.processed), "failed", String(worker.counters.failed), "jobs", jobs.text],
            ["PEXPIRE", key, String(ttl)],
            ["ZADD", worker.schema.workers, String(now), worker.id],
            ["ZREMRANGEBYSCORE", worker.schema.workers, "-inf", String(now - ttl)],
        ])
        if let e = replies.compactMap(\.errorMessage).first { throw RedisError.server(e) }
    }

    private func recover() throws {
        for queue in worker.config.queues {
            let call = RecoverCall(schema: worker.schema, queue: queue, deadTTLSeconds: worker.config.deadTTLSeconds,
                                   deadMax: worker.config.deadMax)
            for r in try redis.run(call) {
                WorkerMetrics.recovered(queue, dead: r.dead)
                let meta: Logger.Metadata = ["job_id": "\(r.id)", "queue": "\(queue)", "attempt": .stringConvertible(r.attempt),
                                             "lost_worker": "\(r.worker)", "worker_id": "\(worker.id)"]
                if r.dead {
                    worker.logger.error("job recovered after its lease expired; no attempts left, moved to dead", metadata: meta)
                } else {
                    worker.logger.warning("job recovered after its lease expired; queued again", metadata: meta)
                }
            }
        }
    }

}
