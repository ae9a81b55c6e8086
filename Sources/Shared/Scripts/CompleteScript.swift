/// Marks a job succeeded with its result, if the caller still holds its lease.
public struct CompleteCall: ScriptCall {
    public static let script = LuaPrelude.script("complete", #"""
-- KEYS[1]  job hash
-- KEYS[2]  lease zset
-- KEYS[3]  stats hash
-- ARGV[1]  job id
-- ARGV[2]  worker id
-- ARGV[3]  attempt number the worker ran
-- ARGV[4]  result (JSON text)
-- ARGV[5]  idempotency key prefix
-- ARGV[6]  throughput key prefix
-- ARGV[7]  finished channel
-- Output:  'ok', or 'stale' when the lease was lost (the job was recovered and
--          runs, or ran, elsewhere): nothing is changed then
if not holds_lease(KEYS[2], KEYS[1], ARGV[1], ARGV[2], ARGV[3]) then return 'stale' end
local now, now_us = clock()
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[1], 'state', 'succeeded', 'finished_at', now_us, 'result', ARGV[4])
expire_job(KEYS[1], ARGV[5], tonumber(redis.call('HGET', KEYS[1], 'result_ttl_s')) or DEFAULT_RESULT_TTL)
redis.call('HINCRBY', KEYS[3], 'processed', 1)
count_minute(ARGV[6], 'processed', now)
redis.call('PUBLISH', ARGV[7], ARGV[1])
return 'ok'
"""#)

    public let jobID: JobID
    public let workerID: String
    public let attempt: Int
    public let resultJSON: String
    let schema: KeySchema

    public init(schema: KeySchema, jobID: JobID, workerID: String, attempt: Int, resultJSON: String) {
        self.schema = schema
        self.jobID = jobID
        self.workerID = workerID
        self.attempt = attempt
        self.resultJSON = resultJSON
    }

    public var script: LuaScript { CompleteCall.script }
    public var keys: [String] { [schema.job(jobID), schema.lease(jobID.queue), schema.stats(jobID.queue)] }
    public var args: [String] {
        [jobID.text, workerID, String(attempt), resultJSON, schema.idempotencyPrefix(jobID.queue),
         schema.throughputPrefix(jobID.queue), schema.finishedChannel]
    }

    /// True when stored; false when the lease was lost and the result dropped.
    public func parse(_ reply: RedisReply) throws -> Bool {
        switch reply.string {
        case "ok": return true
        case "stale": return false
        default: throw unexpected(reply)
        }
    }
}
