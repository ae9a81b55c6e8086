/// Records a failed attempt: schedules a retry, or moves the job to the dead
/// set when it is out of attempts (or the failure is final).
public struct FailCall: ScriptCall {
    public static let script = LuaPrelude.script("fail", #"""
-- KEYS[1]  job hash
-- KEYS[2]  lease zset
-- KEYS[3]  scheduled zset
-- KEYS[4]  dead zset
-- KEYS[5]  stats hash
-- KEYS[6]  wake list
-- ARGV[1]  job id
-- ARGV[2]  worker id
-- ARGV[3]  attempt number the worker ran
-- ARGV[4]  error (JSON text: {"message": ..., "attempt": n})
-- ARGV[5]  retry delay ms (the worker computes backoff and jitter); -1 = do not retry
-- ARGV[6]  dead TTL seconds
-- ARGV[7]  dead set cap
-- ARGV[8..12] job, idempotency, throughput and waiting key prefixes; finished channel
-- Output:  'retry' | 'dead' | 'stale' (lease lost: nothing changed)
if not holds_lease(KEYS[2], KEYS[1], ARGV[1], ARGV[2], ARGV[3]) then return 'stale' end
local now = now_ms()
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[1], 'error', ARGV[4])
redis.call('HINCRBY', KEYS[5], 'failed', 1)
count_minute(ARGV[10], 'failed', now)
local attempts = tonumber(redis.call('HGET', KEYS[1], 'attempts')) or 1
local max_attempts = tonumber(redis.call('HGET', KEYS[1], 'max_attempts')) or DEFAULT_MAX_ATTEMPTS
local delay = tonumber(ARGV[5])
if delay >= 0 and attempts < max_attempts then
  redis.call('HSET', KEYS[1], 'state', 'scheduled', 'run_at', (now + delay) * 1000)
  redis.call('ZADD', KEYS[3], now + delay, ARGV[1])
  redis.call('HINCRBY', KEYS[5], 'retried', 1)
  -- An idle worker shortens its wait to this retry's time.
  wake(KEYS[6])
  return 'retry'
end
bury(KEYS[4], KEYS[5], KEYS[1], ARGV[8], ARGV[9], ARGV[1], now, tonumber(ARGV[6]), tonumber(ARGV[7]), ARGV[11], ARGV[12])
return 'dead'
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
    public var keys: [String] {
        let q = jobID.queue
        return [schema.job(jobID), schema.lease(q), schema.scheduled(q), schema.dead(q), schema.stats(q), schema.wake(q)]
    }
    public var args: [String] {
        [jobID.text, workerID, String(attempt), errorJSON, String(retryDelayMs ?? -1), String(deadTTLSeconds),
         String(deadMax)] + schema.finishPrefixes(jobID.queue)
    }

    public func parse(_ reply: RedisReply) throws -> Outcome {
        guard let s = reply.string, let outcome = Outcome(rawValue: s) else { throw unexpected(reply) }
        return outcome
    }
}
