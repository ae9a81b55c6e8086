/// Takes the next job of a queue for a worker, in one round trip: promotes due
/// scheduled jobs, pops by priority, leases the job and returns its fields.
public struct FetchCall: ScriptCall {
    public static let script = LuaPrelude.script("fetch", #"""
-- KEYS[1..4] pending lists (urgent, high, normal, low)
-- KEYS[5]    scheduled zset
-- KEYS[6]    lease zset
-- KEYS[7]    paused flag
-- KEYS[8]    wake list
-- ARGV[1]    job key prefix
-- ARGV[2]    lease length ms
-- ARGV[3]    worker id
-- ARGV[4]    most scheduled jobs to promote in this call
-- Output:    {'job', id, now µs, HGETALL of the job before the claim}  now running under this worker's lease
--            {'empty', next due ms or -1, now ms}                        nothing to run
--            {'paused', -1, now ms}                                      the queue is paused
local now, now_us = clock()
local q = {job_prefix = ARGV[1], pending = {KEYS[1], KEYS[2], KEYS[3], KEYS[4]}, scheduled = KEYS[5],
           lease = KEYS[6], paused = KEYS[7], wake = KEYS[8]}
return fetch_next(q, ARGV[3], tonumber(ARGV[2]), tonumber(ARGV[4]), now, now_us)
"""#)

    public enum Outcome {
        /// A job now leased to this worker.
        case job(Job)
        /// A job whose hash could not be read (damaged in Redis): it is leased,
        /// so the worker must fail it with `error`.
        case damaged(JobID, attempt: Int, error: String)
        /// Nothing to run; `nextDueInMs` is when the next scheduled job is due (nil: none).
        case empty(nextDueInMs: Int64?)
        case paused
    }

    public let queue: String
    public let workerID: String
    public let leaseMs: Int64
    public let promoteLimit: Int
    let schema: KeySchema
    /// Built once: a worker keeps one call per queue and sends it for every
    /// job (rebuilding the key names showed in profiles).
    public let keys: [String]
    public let args: [String]

    public init(schema: KeySchema, queue: String, workerID: String, leaseMs: Int64, promoteLimit: Int = 100) {
        self.schema = schema
        self.queue = queue
        self.workerID = workerID
        self.leaseMs = leaseMs
        self.promoteLimit = promoteLimit
        keys = schema.pendingLists(queue) + [schema.scheduled(queue), schema.lease(queue), schema.paused(queue), schema.wake(queue)]
        args = [schema.jobPrefix(queue), String(leaseMs), workerID, String(promoteLimit)]
    }

    public var script: LuaScript { FetchCall.script }

    public func parse(_ reply: RedisReply) throws -> Outcome {
        guard let parts = reply.array, let outcome = FetchCall.outcome(parts, workerID: workerID) else { throw unexpected(reply) }
        return outcome
    }

    /// Reads a fetch reply (shared with CompleteAndFetchCall). The job's
    /// fields come as they were before the claim, so the claim's changes are
    /// applied here: running, one more attempt, started now, by this worker.
    static func outcome(_ parts: [RedisReply], workerID: String) -> Outcome? {
        guard parts.count >= 3, let kind = parts[0].string else { return nil }
        switch kind {
        case "job":
            guard parts.count == 4, let idText = parts[1].string, let nowUs = parts[2].int,
                  let id = JobID(parsing: idText) else { return nil }
            let hash = parts[3].hash
            let attempt = (Int(hash[JobField.attempts] ?? "") ?? 0) + 1
            do {
                var job = try Job(id: id, hash: hash)
                job.state = .running
                job.attempts = attempt
                job.startedUs = nowUs
                job.worker = workerID
                return .job(job)
            } catch {
                return .damaged(id, attempt: attempt, error: "\(error)")
            }
        case "empty":
            guard let due = parts[1].int, let now = parts[2].int else { return nil }
            return .empty(nextDueInMs: due < 0 ? nil : max(0, due - now))
        case "paused":
            return .paused
        default:
            return nil
        }
    }
}
