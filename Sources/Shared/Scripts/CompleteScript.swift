/// Marks a job succeeded with its result, if the caller still holds its lease.
public struct CompleteCall: ScriptCall {
    public static let script = LuaScript(name: "complete", uses: [CommonLua.clock, CommonLua.queueKeys, completeJob],
                                         body: #"""
-- KEYS[1..10], ARGV[1..5] the queue's keys (QueueKeys)
-- KEYS[11]   job hash
-- ARGV[6]    job id
-- ARGV[7]    worker id
-- ARGV[8]    attempt number the worker ran
-- ARGV[9]    result (JSON text)
-- Output:  1 stored (now, or by this same report sent before: a worker sends
--          it again when the reply was lost), or 0 when the lease was lost (the
--          job was recovered and runs, or ran, elsewhere, or was cancelled):
--          nothing changes then
local now, _, now_us_text = clock()
local q = queue_keys()
local outcome = complete_job(q, ARGV[6], ARGV[7], ARGV[8], ARGV[9], now_us_text)
if outcome == STORED then count_successes(q, 1, now) end
return outcome == STALE and 0 or 1
"""#)

    /// Also used by CompleteAndFetchCall, for a batch of successes.
    static let completeJob = LuaPiece("complete_job", uses: [CommonLua.defaults, CommonLua.finishing, EventLogLua.log], #"""
-- Records a job's success if this worker still holds its lease: STORED. The
-- same report sent again (its reply was lost) finds it done: STORED_BEFORE,
-- changing nothing. Else the job was recovered or cancelled, and this result
-- is stale: STALE, nothing changes. The caller counts the STORED ones
-- (count_successes), once per call.
local STORED, STORED_BEFORE, STALE = 1, 2, 0
local function complete_job(q, id, worker, attempt, result, now_us_text)
  local key = q.job_prefix .. id
  local f = redis.call('HMGET', key, 'state', 'worker', 'attempts', 'result_ttl_s', 'idem', 'client', 'ev')
  if f[2] ~= worker or f[3] ~= attempt then return STALE end
  -- Only this worker's run of this attempt can have made it succeeded.
  if f[1] == 'succeeded' then return STORED_BEFORE end
  if f[1] ~= 'running' then return STALE end
  if redis.call('ZREM', q.lease, id) == 0 then return STALE end
  redis.call('HSET', key, 'state', 'succeeded', 'finished_at', now_us_text, 'result', result)
  local ttl = tonumber(f[4]) or DEFAULT_RESULT_TTL
  redis.call('EXPIRE', key, ttl)
  if f[5] then redis.call('EXPIRE', q.idem_prefix .. f[5], ttl) end
  log_state(q, id, 'succeeded', attempt, {'d', result}, ttl, f[7] == '1')
  count_client_jobs(q, f[6], -1)
  notify_finished(q, id)
  return STORED
end

-- Adds `n` stored successes to the queue's counters.
local function count_successes(q, n, now)
  if n < 1 then return end
  redis.call('HINCRBY', q.stats, 'processed', n)
  count_minute(q, 'processed', now, n)
end
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
    public var keys: [String] { schema.queueKeys(jobID.queue).keys + [schema.job(jobID)] }
    public var args: [String] {
        schema.queueKeys(jobID.queue).args
            + [jobID.text, workerID, String(attempt), FieldCipher.stored(resultJSON, job: jobID.text, field: JobField.result)]
    }

    /// True when stored; false when the lease was lost and the result dropped.
    public func parse(_ reply: RedisReply) throws -> Bool {
        guard let n = reply.int, n == 0 || n == 1 else { throw unexpected(reply) }
        return n == 1
    }
}
