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
    let worker: WorkerContext
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
        let holder = LimitHolder(job.id, attempt: job.attempts)
        var held: [String] = []
        for limit in limits {
            let acquire = LimitBatchCall.Operation.acquire(holder, cost: job.cost ?? 0, holdMs: worker.config.leaseMs)
            let outcome: AcquireLimitCall.Outcome
            do {
                outcome = try worker.limitBatcher(limit).run(acquire, send: { try self.send($0, limit: limit) }) ?? .granted
            } catch {
                undo(held, holder, cost: job.cost ?? 0)
                // Its limit could not be asked (Redis trouble): back to the head of its queue.
                claim.giveBack(over: redis, worker: worker)
                throw error
            }
            switch outcome {
            case .granted:
                held.append(limit)
            case .refused(let reason, let retryInMs):
                // Neither: what the job's other limit gave is taken back.
                undo(held, holder, cost: job.cost ?? 0)
                try park(claim, limit: limit, reason: reason, retryInMs: retryInMs)
                return nil
            }
        }
        return claim
    }

    /// Takes back slots acquired for a job that will not run now (best effort:
    /// a slot that cannot be given back lapses with the lease).
    func undo(_ limits: [String], _ holder: LimitHolder, cost: Int64) {
        for limit in limits {
            _ = try? worker.limitBatcher(limit).run(.undo(holder, cost: cost), send: { try self.send($0, limit: limit) })
        }
    }

    /// Parks a claimed job its limit refused, and notes when to ask again.
    /// When the park fails, the job is given back (or left to lease recovery).
    private func park(_ claim: Claim, limit: String, reason: String, retryInMs: Int64) throws {
        let job = claim.job
        do {
            _ = try redis.run(ParkCall(schema: worker.schema, jobID: job.id, workerID: worker.id, attempt: job.attempts,
                                       limit: limit, atHead: claim.fromParked))
        } catch {
            claim.giveBack(over: redis, worker: worker)
            throw error
        }
        noteParked(job.id, limit: limit, reason: reason, retryInMs: retryInMs)
    }

    /// Notes when to ask again for a job parked behind `limit` (ParkedLimits).
    func noteParked(_ id: JobID, limit: String, reason: String, retryInMs: Int64) {
        worker.parked.refused(ParkedLimits.Place(queue: id.queue, limit: limit), retryInMs: retryInMs, reason: reason)
        worker.logger.debug("job waits for its limit", metadata: [
            "job_id": "\(id)", "limit": "\(limit)", "reason": "\(reason)", "retry_in_ms": .stringConvertible(retryInMs)])
    }

    /// After a run is recorded: gives back its slots and admits the job the
    /// same call claimed next (nil when it was parked), unless the batch's
    /// leader already did either (settleBatch).
    func finish(_ run: JobRun, _ recorded: JobReporter.Recorded) throws -> Claim? {
        if !recorded.released { release(run) }
        guard let next = recorded.next else { return nil }
        return recorded.nextAdmitted ? next : try admit(next)
    }

    /// The run's slot, when one batch call can give it back: a success under
    /// one limit (a back-off or two limits take the loop's own path).
    func batchableRelease(_ run: JobRun) -> LimitRelease? {
        let limits = worker.limits(of: run.job)
        guard limits.count == 1 else { return nil }
        return LimitRelease(limit: limits[0], holder: LimitHolder(run.job.id, attempt: run.attempt),
                            extraUnits: extraUnits(run, limit: limits[0]))
    }

    /// The leader of a batch of successes: gives back the runs' slots and
    /// takes the slots of the jobs the same call claimed, one call per limit
    /// for the whole batch (parking the jobs refused). What it could not do
    /// (a job under two limits, a failed call) is left to each loop.
    func settleBatch(_ answers: [CompletionBatcher.Answer], releases: [LimitRelease?]) -> [CompletionBatcher.Answer] {
        var answers = answers
        var operations: [String: [LimitBatchCall.Operation]] = [:]
        var releasedBy: [String: [Int]] = [:]
        var acquiredBy: [String: [Int]] = [:]
        for (i, r) in releases.enumerated() {
            guard let r else { continue }
            operations[r.limit, default: []].append(.release(r.holder, extraUnits: r.extraUnits, pauseMs: 0))
            releasedBy[r.limit, default: []].append(i)
        }
        for (i, answer) in answers.enumerated() where !answer.nextAdmitted {
            guard case .job(let job)? = answer.next else { answers[i].nextAdmitted = true; continue }
            let limits = worker.limits(of: job)
            if limits.isEmpty {
                answers[i].nextAdmitted = true
            } else if limits.count == 1 {
                operations[limits[0], default: []].append(.acquire(LimitHolder(job.id, attempt: job.attempts), cost: job.cost ?? 0,
                                                                   holdMs: worker.config.leaseMs))
                acquiredBy[limits[0], default: []].append(i)
            }
        }
        for (limit, ops) in operations {
            let outcomes: [AcquireLimitCall.Outcome?]
            do {
                outcomes = try send(ops, limit: limit)
            } catch {
                continue
            }
            for i in releasedBy[limit] ?? [] { answers[i].released = true }
            let acquires = outcomes.dropFirst(releasedBy[limit]?.count ?? 0)
            for (i, outcome) in zip(acquiredBy[limit] ?? [], acquires) {
                if case .refused(let reason, let retryInMs)? = outcome, case .job(let job)? = answers[i].next {
                    // Parked here; should that fail, the job was given back
                    // (or is left to lease recovery): the loop must not run it.
                    try? park(Claim(job: job, sentAt: answers[i].sentAt), limit: limit, reason: reason, retryInMs: retryInMs)
                    answers[i].parked()
                } else {
                    answers[i].nextAdmitted = true
                }
            }
        }
        return answers
    }

    /// Usage is settled on the job's own limit (a group's cap counts jobs, not units).
    private func extraUnits(_ run: JobRun, limit: String) -> Int64 {
        guard limit == worker.config.limit(of: run.job) else { return 0 }
        return run.usage.map { $0 - (run.job.cost ?? 0) } ?? 0
    }

    /// Gives back the slots of a run that held some, once its end is
    /// recorded, with its settled usage (its own limit's budget) or the
    /// provider's pause (its own limit).
    func release(_ run: JobRun) {
        for (i, limit) in worker.limits(of: run.job).enumerated() {
            let own = i == 0 && worker.config.limit(of: run.job) != nil
            let extra = extraUnits(run, limit: limit)
            release(limit, LimitHolder(run.job.id, attempt: run.attempt), extraUnits: extra, pauseMs: own ? run.retryAfterMs ?? 0 : 0)
            if own, let pause = run.retryAfterMs {
                worker.logger.warning("limit paused: the provider asked to wait", metadata: [
                    "limit": "\(limit)", "pause_ms": .stringConvertible(pause), "job_id": "\(run.job.id)"])
            }
        }
    }

    /// Best effort: a release that cannot be sent lapses with the lease.
    private func release(_ limit: String, _ holder: LimitHolder, extraUnits: Int64 = 0, pauseMs: Int64 = 0) {
        let release = LimitBatchCall.Operation.release(holder, extraUnits: extraUnits, pauseMs: pauseMs)
        do {
            _ = try worker.limitBatcher(limit).run(release, send: { try self.send($0, limit: limit) })
        } catch {
            worker.logger.warning("could not release a limit's slot; it lapses with the job's lease", metadata: [
                "limit": "\(limit)", "job_id": "\(holder.jobID)", "error": "\(error)"])
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
    func wake(_ queues: [String], limit: String) {
        guard !queues.isEmpty else { return }
        for q in queues where worker.config.queues.contains(q) {
            worker.parked.wake(ParkedLimits.Place(queue: q, limit: limit))
        }
        _ = try? redis.pipeline(queues.map { ["LPUSH", worker.schema.wake($0), ParkedLimits.tokenPrefix + limit] })
    }
}

/// A finished run's slot to give back, with the batch it was recorded in.
struct LimitRelease {
    let limit: String
    let holder: LimitHolder
    let extraUnits: Int64
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
