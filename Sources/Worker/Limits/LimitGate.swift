import Logging
import Shared

/// Runs a claimed job only when its limit allows (`PUT /v1/limits/{name}`),
/// on the fetch loop's connection:
/// 1. after the claim, **acquire** a slot of the job's limit (its own slot on
///    Redis Cluster, so a call apart from the queue's scripts);
/// 2. refused: **park** the job in its queue (back to queued, the attempt
///    not counted) and note when to ask again (ParkedLimits); the loop goes
///    on with other jobs, so a limited job never holds up unlimited ones;
/// 3. after the job's end is recorded, **release** the slot with its
///    settled usage or the provider's pause, and wake the queues whose jobs
///    wait for it.
/// A worker that dies holds its slots only until its leases would have
/// lapsed: holds carry the lease's deadline and the control loop renews them
/// with the leases.
final class LimitGate {
    private let worker: WorkerContext
    private let redis: RedisConnection

    init(worker: WorkerContext, redis: RedisConnection) {
        self.worker = worker
        self.redis = redis
    }

    /// The claim if its job may run now; nil when it was parked (or had
    /// already left this worker). A job under two limits (its own and its
    /// group's) takes both or neither.
    func admit(_ claim: Claim) throws -> Claim? {
        let job = claim.job
        let limits = worker.limits(of: job)
        guard !limits.isEmpty else { return claim }
        var held: [String] = []
        for limit in limits {
            let acquire = LimitBatchCall.Operation.acquire(job.id, cost: job.cost ?? 0, holdMs: worker.config.leaseMs)
            switch try worker.limitBatcher(limit).run(acquire, send: { try self.send($0, limit: limit) }) ?? .granted {
            case .granted:
                held.append(limit)
            case .refused(let reason, let retryInMs):
                for other in held { release(other, job.id) }
                try park(claim, limit: limit, reason: reason, retryInMs: retryInMs)
                return nil
            }
        }
        return claim
    }

    /// Parks a claimed job its limit refused, and notes when to ask again.
    private func park(_ claim: Claim, limit: String, reason: String, retryInMs: Int64) throws {
        let job = claim.job
        _ = try redis.run(ParkCall(schema: worker.schema, jobID: job.id, workerID: worker.id, attempt: job.attempts,
                                   limit: limit, atHead: claim.fromParked))
        worker.parked.refused(ParkedLimits.Place(queue: job.id.queue, limit: limit), retryInMs: retryInMs,
                              reason: reason, newlyParked: !claim.fromParked)
        worker.logger.debug("job waits for its limit", metadata: [
            "job_id": "\(job.id)", "limit": "\(limit)", "reason": "\(reason)", "retry_in_ms": .stringConvertible(retryInMs)])
    }

    /// After a run: gives back its slots and admits the job the same call
    /// claimed next (nil when it was parked). When both take the same one
    /// limit, the release and the acquire go in one call.
    func finish(_ run: JobRun, thenAdmit next: Claim?) throws -> Claim? {
        let limits = worker.limits(of: run.job)
        guard let next, limits.count == 1, worker.limits(of: next.job) == limits, run.retryAfterMs == nil else {
            release(run)
            return try next.flatMap(admit)
        }
        let limit = limits[0]
        let extra = run.usage.map { $0 - (run.job.cost ?? 0) } ?? 0
        let operations: [LimitBatchCall.Operation] = [
            .release(run.job.id, extraUnits: extra, pauseMs: 0),
            .acquire(next.job.id, cost: next.job.cost ?? 0, holdMs: worker.config.leaseMs),
        ]
        let outcomes: [AcquireLimitCall.Outcome?]
        do {
            outcomes = try worker.limitBatcher(limit).run(operations, send: { try self.send($0, limit: limit) })
        } catch {
            // The release lapses with the lease; the claimed job is admitted on its own.
            worker.logger.warning("could not release a limit's slot; it lapses with the job's lease", metadata: [
                "limit": "\(limit)", "job_id": "\(run.job.id)", "error": "\(error)"])
            return try admit(next)
        }
        if case .refused(let reason, let retryInMs)? = outcomes[1] {
            try park(next, limit: limit, reason: reason, retryInMs: retryInMs)
            return nil
        }
        return next
    }

    /// Gives back the slots of a run that held some, once its end is
    /// recorded, with its settled usage (its own limit's budget) or the
    /// provider's pause (its own limit).
    func release(_ run: JobRun) {
        for (i, limit) in worker.limits(of: run.job).enumerated() {
            let own = i == 0 && worker.config.limit(of: run.job) != nil
            let extra = own ? run.usage.map { $0 - (run.job.cost ?? 0) } ?? 0 : 0
            release(limit, run.job.id, extraUnits: extra, pauseMs: own ? run.retryAfterMs ?? 0 : 0)
            if own, let pause = run.retryAfterMs {
                worker.logger.warning("limit paused: the provider asked to wait", metadata: [
                    "limit": "\(limit)", "pause_ms": .stringConvertible(pause), "job_id": "\(run.job.id)"])
            }
        }
    }

    /// Best effort: a release that cannot be sent lapses with the lease.
    private func release(_ limit: String, _ id: JobID, extraUnits: Int64 = 0, pauseMs: Int64 = 0) {
        let release = LimitBatchCall.Operation.release(id, extraUnits: extraUnits, pauseMs: pauseMs)
        do {
            _ = try worker.limitBatcher(limit).run(release, send: { try self.send($0, limit: limit) })
        } catch {
            worker.logger.warning("could not release a limit's slot; it lapses with the job's lease", metadata: [
                "limit": "\(limit)", "job_id": "\(id)", "error": "\(error)"])
        }
    }

    /// Sends a batch of one limit's operations (this loop leads it) and wakes
    /// the queues its releases freed slots for.
    private func send(_ operations: [LimitBatchCall.Operation], limit: String) throws -> [AcquireLimitCall.Outcome?] {
        let (queues, outcomes) = try redis.run(LimitBatchCall(schema: worker.schema, limit: limit, operations: operations))
        wake(queues, limit: limit)
        return outcomes
    }

    /// Tells the queues whose jobs wait for `limit` that a slot freed: a wake
    /// token naming the limit for their idle loops, here and in other workers.
    private func wake(_ queues: [String], limit: String) {
        guard !queues.isEmpty else { return }
        for q in queues where worker.config.queues.contains(q) {
            worker.parked.wake(ParkedLimits.Place(queue: q, limit: limit))
        }
        _ = try? redis.pipeline(queues.map { ["LPUSH", worker.schema.wake($0), ParkedLimits.tokenPrefix + limit] })
    }
}

extension WorkerConfig {
    /// The limit a job runs under: its own, or its type's (SPOOL_LIMITS_BY_TYPE).
    func limit(of job: Job) -> String? { job.limit ?? limitsByType[job.type] }
}

extension WorkerContext {
    /// Every limit a job takes: its own (or its type's), then its group's cap
    /// when one is defined (the limit `group:<name>`; defined limits are
    /// read every heartbeat, so an undefined cap costs no call).
    func limits(of job: Job) -> [String] {
        var out: [String] = []
        if let own = config.limit(of: job) { out.append(own) }
        if let group = job.group {
            let cap = LimitGate.groupLimitPrefix + group
            if cap != out.first, definedLimits.contains(cap) { out.append(cap) }
        }
        return out
    }
}

extension LimitGate {
    /// A group's concurrency cap is the limit of this name plus the group's.
    static let groupLimitPrefix = "group:"
}
