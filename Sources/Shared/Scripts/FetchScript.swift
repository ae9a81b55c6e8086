/// Takes the next job of a queue for a worker, in one round trip: promotes due
/// scheduled jobs, pops by priority, leases the job and returns its fields.
public struct FetchCall: ScriptCall {
    public static let script = LuaPrelude.script("fetch", #"""
-- KEYS[1..4] pending lists (urgent, high, normal, low)
-- KEYS[5]    scheduled zset
-- KEYS[6]    lease zset
-- KEYS[7]    paused flag
-- KEYS[8]    wake list
-- KEYS[9]    stats hash (counts ids found without their job hash: 'missing')
-- ARGV[1]    job key prefix
-- ARGV[2]    lease length ms
-- ARGV[3]    worker id
-- ARGV[4]    most scheduled jobs to promote in this call
-- ARGV[5]    receipt key of the calling loop ('' for none), see KeySchema.receipt
-- ARGV[6]    this call's token, written to the receipt
-- Output:    {'jobs', now µs, id, HGETALL of the job before the claim}  now running under this worker's lease
--            {'empty', next due ms or -1, now ms}                         nothing to run
--            {'paused', -1, now ms}                                       the queue is paused
-- (CompleteAndFetchCall claims several jobs with the same reply: 'jobs' then
-- one id and field list per job.)
local now, now_us, now_us_text = clock()
local q = {job_prefix = ARGV[1], pending = {KEYS[1], KEYS[2], KEYS[3], KEYS[4]}, scheduled = KEYS[5],
           lease = KEYS[6], paused = KEYS[7], wake = KEYS[8], stats = KEYS[9],
           receipt = {key = ARGV[5], token = ARGV[6], ttl_ms = ARGV[2], flags = '-'}}
if fenced(q.receipt) then return redis.error_reply('FENCED call settled as not run') end
return fetch_jobs(q, ARGV[3], tonumber(ARGV[2]), tonumber(ARGV[4]), 1, now, now_us, now_us_text)
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
    /// The calling loop's receipt key ("" when the caller keeps none).
    public let receiptKey: String
    /// Names one sending of this call in the receipt: a caller with a loop
    /// sets a new, larger one for every call (a decimal number), so that a
    /// lost reply can be settled (SettleCall).
    public var token = ""
    let schema: KeySchema
    /// Built once: a worker keeps one call per queue and sends it for every
    /// job (rebuilding the key names showed in profiles).
    public let keys: [String]
    /// Job prefix, lease ms, worker id, promote limit, receipt key.
    let fixedArgs: [String]

    /// `loop` names the worker's loop that sends the call (unique within the
    /// worker); with one, each call leaves a receipt under that name.
    public init(schema: KeySchema, queue: String, workerID: String, leaseMs: Int64, promoteLimit: Int = 100,
                loop: String? = nil) {
        self.schema = schema
        self.queue = queue
        self.workerID = workerID
        self.leaseMs = leaseMs
        self.promoteLimit = promoteLimit
        receiptKey = loop.map { schema.receipt(queue, caller: "\(workerID)/\($0)") } ?? ""
        keys = schema.pendingLists(queue) + [schema.scheduled(queue), schema.lease(queue), schema.paused(queue), schema.wake(queue),
                                             schema.stats(queue)]
        fixedArgs = [schema.jobPrefix(queue), String(leaseMs), workerID, String(promoteLimit), receiptKey]
    }

    public var args: [String] { fixedArgs + [checkedToken] }

    /// The token, which a call that leaves a receipt must have.
    var checkedToken: String {
        precondition(receiptKey.isEmpty || !token.isEmpty, "a call that leaves a receipt needs a token")
        return token
    }

    public var script: LuaScript { FetchCall.script }

    public func parse(_ reply: RedisReply) throws -> Outcome {
        guard let parts = reply.array, let outcomes = FetchCall.outcomes(parts[...], workerID: workerID),
              let first = outcomes.first else { throw unexpected(reply) }
        return first
    }

    /// Reads a fetch reply (shared with CompleteAndFetchCall): one outcome per
    /// claimed job, or a single `.empty` or `.paused`. The jobs' fields come as
    /// they were before the claim, so the claim's changes are applied here:
    /// running, one more attempt, started now, by this worker.
    static func outcomes(_ parts: ArraySlice<RedisReply>, workerID: String) -> [Outcome]? {
        guard parts.count >= 2, let kind = parts.first?.string else { return nil }
        let rest = parts.dropFirst()
        switch kind {
        case "jobs":
            guard let nowUs = rest.first?.int, rest.count >= 3, rest.count % 2 == 1 else { return nil }
            var claimed: [Outcome] = []
            claimed.reserveCapacity(rest.count / 2)
            var i = rest.startIndex + 1
            while i < rest.endIndex {
                guard let idText = rest[i].string, let id = JobID(parsing: idText) else { return nil }
                claimed.append(claim(id, hash: rest[i + 1].hash, nowUs: nowUs, workerID: workerID))
                i += 2
            }
            return claimed
        case "empty":
            guard rest.count == 2, let due = rest.first?.int, let now = rest.last?.int else { return nil }
            return [.empty(nextDueInMs: due < 0 ? nil : max(0, due - now))]
        case "paused":
            return [.paused]
        default:
            return nil
        }
    }

    private static func claim(_ id: JobID, hash: [String: String], nowUs: Int64, workerID: String) -> Outcome {
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
    }
}
