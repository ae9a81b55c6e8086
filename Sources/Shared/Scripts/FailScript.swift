/// Records a failed attempt: schedules a retry, or moves the job to the dead
/// set when it is out of attempts (or the failure is final).
public struct FailCall: ScriptCall {
    public static let script = LuaScript(name: "fail", uses: [CommonLua.clock, CommonLua.queueKeys, CommonLua.lease,
                                                              CommonLua.wake, EventLogLua.log, bury], body: #"""
-- KEYS[1..10], ARGV[1..5] the queue's keys (QueueKeys)
-- KEYS[11]  job hash
-- ARGV[6]   job id
-- ARGV[7]   worker id
-- ARGV[8]   attempt number the worker ran
-- ARGV[9]   error (JSON text: {"message": ..., "attempt": n})
-- ARGV[10]  retry delay ms (the worker computes backoff and jitter); -1 = do not retry
-- ARGV[11]  dead TTL seconds
-- ARGV[12]  dead set cap
-- Output:  'retry' | 'dead' | 'stale' (lease lost: nothing changed)
local q = queue_keys()
local key, id = KEYS[11], ARGV[6]
if not holds_lease(q, id, ARGV[7], ARGV[8]) then return 'stale' end
local now = now_ms()
redis.call('ZREM', q.lease, id)
redis.call('HSET', key, 'error', ARGV[9])
redis.call('HINCRBY', q.stats, 'failed', 1)
count_minute(q, 'failed', now)
local f = redis.call('HMGET', key, 'attempts', 'max_attempts')
local attempts = tonumber(f[1]) or 1
local max_attempts = tonumber(f[2]) or DEFAULT_MAX_ATTEMPTS
local delay = tonumber(ARGV[10])
if delay >= 0 and attempts < max_attempts then
  redis.call('HSET', key, 'state', 'scheduled', 'run_at', (now + delay) * 1000)
  redis.call('ZADD', q.scheduled, now + delay, id)
  redis.call('HINCRBY', q.stats, 'retried', 1)
  log_state(q, id, 'scheduled', f[1] or '1', {'e', ARGV[9], 'r', (now + delay) * 1000})
  -- An idle worker shortens its wait to this retry's time.
  wake(q.wake)
  return 'retry'
end
bury(q, id, now, tonumber(ARGV[11]), tonumber(ARGV[12]))
return 'dead'
"""#)

    /// Also used by RecoverCall, for a job whose lease ran out on its last attempt.
    static let bury = LuaPiece("bury", uses: [CommonLua.defaults, CommonLua.finishing, EventLogLua.lifecycle], #"""
-- Moves a job to the dead set, kept dead_ttl seconds and at most dead_max
-- per queue (oldest dropped first, together with their hashes).
local function bury(q, id, now, dead_ttl, dead_max)
  local key = q.job_prefix .. id
  redis.call('HSET', key, 'state', 'dead', 'finished_at', now * 1000)
  local f = redis.call('HMGET', key, 'client', 'attempts', 'error')
  count_client_jobs(q, f[1], -1)
  log_state(q, id, 'dead', f[2] or '0', {'e', f[3] or ''}, dead_ttl)
  notify_finished(q, id)
  redis.call('ZADD', q.dead, now, id)
  expire_job(q, key, dead_ttl)
  redis.call('HINCRBY', q.stats, 'dead', 1)
  redis.call('ZREMRANGEBYSCORE', q.dead, '-inf', now - dead_ttl * 1000)
  local extra = redis.call('ZCARD', q.dead) - dead_max
  if extra > 0 then
    for _, old in ipairs(redis.call('ZRANGE', q.dead, 0, extra - 1)) do
      local old_idem = redis.call('HGET', q.job_prefix .. old, 'idem')
      if old_idem then redis.call('DEL', q.idem_prefix .. old_idem) end
      redis.call('DEL', q.job_prefix .. old)
      delete_log(q, old)
    end
    redis.call('ZREMRANGEBYRANK', q.dead, 0, extra - 1)
  end
end
"""#)

    public enum Outcome: String { case retry, dead, stale }

    public let jobID: JobID
    public let workerID: String
    public let attempt: Int
    public let errorJSON: String
    /// nil: the failure is final, do not retry.
    public let retryDelayMs: Int64?
    public let deadTTLSeconds: Int64
    public let deadMax: Int
    let schema: KeySchema

    public init(schema: KeySchema, jobID: JobID, workerID: String, attempt: Int, errorJSON: String,
                retryDelayMs: Int64?, deadTTLSeconds: Int64, deadMax: Int) {
        self.schema = schema
        self.jobID = jobID
        self.workerID = workerID
        self.attempt = attempt
        self.errorJSON = errorJSON
        self.retryDelayMs = retryDelayMs
        self.deadTTLSeconds = deadTTLSeconds
        self.deadMax = deadMax
    }

    public var script: LuaScript { FailCall.script }
    public var keys: [String] { schema.queueKeys(jobID.queue).keys + [schema.job(jobID)] }
    public var args: [String] {
        schema.queueKeys(jobID.queue).args
            + [jobID.text, workerID, String(attempt), FieldCipher.stored(errorJSON, job: jobID.text, field: JobField.error),
               String(retryDelayMs ?? -1), String(deadTTLSeconds),
               String(deadMax)]
    }

    public func parse(_ reply: RedisReply) throws -> Outcome {
        guard let s = reply.string, let outcome = Outcome(rawValue: s) else { throw unexpected(reply) }
        return outcome
    }
}
