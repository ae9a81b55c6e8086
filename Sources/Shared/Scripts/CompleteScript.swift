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
-- ARGV[5..9] job, idempotency, throughput and waiting key prefixes; finished channel
-- Output:  1 stored (now, or by this same report sent before: a worker sends
--          it again when the reply was lost), or 0 when the lease was lost (the
--          job was recovered and runs, or ran, elsewhere, or was cancelled):
--          nothing changes then
local now, _, now_us_text = clock()
local q = {job_prefix = ARGV[5], idem_prefix = ARGV[6], throughput_prefix = ARGV[7], waiting_prefix = ARGV[8],
           channel = ARGV[9], lease = KEYS[2], stats = KEYS[3]}
if not complete_job(q, ARGV[1], ARGV[2], ARGV[3], ARGV[4], now_us_text) then
  -- Only this worker's run of this attempt can have made it succeeded.
  local f = redis.call('HMGET', KEYS[1], 'state', 'worker', 'attempts')
  if f[1] == 'succeeded' and f[2] == ARGV[2] and f[3] == ARGV[3] then return 1 end
  return 0
end
count_successes(q, 1, now)
return 1
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
    public var args: [String] { [jobID.text, workerID, String(attempt), resultJSON] + schema.finishPrefixes(jobID.queue) }

    /// True when stored; false when the lease was lost and the result dropped.
    public func parse(_ reply: RedisReply) throws -> Bool {
        guard let n = reply.int, n == 0 || n == 1 else { throw unexpected(reply) }
        return n == 1
    }
}

extension KeySchema {
    /// What a script that finishes jobs needs to derive their keys: the job,
    /// idempotency, throughput and waiting key prefixes, and the finished channel.
    func finishPrefixes(_ q: String) -> [String] {
        [jobPrefix(q), idempotencyPrefix(q), throughputPrefix(q), waitingPrefix(q), finishedChannel]
    }
}
