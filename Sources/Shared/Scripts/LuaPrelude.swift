/// Lua helpers that several scripts share; each script's source starts with it.
enum LuaPrelude {
    static let source = """
-- Job options that are not stored when they have their default value (this
-- saves a fifth of a pending job's memory); JobOptions holds the same numbers.
local DEFAULT_MAX_ATTEMPTS = \(JobOptions().maxAttempts)
local DEFAULT_RESULT_TTL = \(JobOptions().resultTTLSeconds)

""" + #"""
-- Redis' clock, which every process agrees on: milliseconds (scores, deadlines)
-- and microseconds (the job's timestamps, precise enough to measure sub-ms
-- enqueue-to-start latency).
local function clock()
  local t = redis.call('TIME')
  local us = tonumber(t[1]) * 1000000 + tonumber(t[2])
  return math.floor(us / 1000), us
end

local function now_ms()
  local ms = clock()
  return ms
end

-- Expires a finished job's hash (and its idempotency key) after ttl seconds.
local function expire_job(job_key, idem_prefix, ttl)
  redis.call('EXPIRE', job_key, ttl)
  local idem = redis.call('HGET', job_key, 'idem')
  if idem and idem_prefix ~= '' then redis.call('EXPIRE', idem_prefix .. idem, ttl) end
end

-- Counts a processed or failed job in the current minute's bucket (kept an hour).
local function count_minute(throughput_prefix, field, now)
  local key = throughput_prefix .. math.floor(now / 60000)
  redis.call('HINCRBY', key, field, 1)
  redis.call('EXPIRE', key, 3720)
end

-- Moves a job to the dead set, kept dead_ttl seconds and at most dead_max
-- per queue (oldest dropped first, together with their hashes).
local function bury(dead_key, stats_key, job_key, job_prefix, idem_prefix, id, now, dead_ttl, dead_max, channel)
  redis.call('HSET', job_key, 'state', 'dead', 'finished_at', now * 1000)
  redis.call('PUBLISH', channel, id)
  redis.call('ZADD', dead_key, now, id)
  expire_job(job_key, idem_prefix, dead_ttl)
  redis.call('HINCRBY', stats_key, 'dead', 1)
  redis.call('ZREMRANGEBYSCORE', dead_key, '-inf', now - dead_ttl * 1000)
  local extra = redis.call('ZCARD', dead_key) - dead_max
  if extra > 0 then
    for _, old in ipairs(redis.call('ZRANGE', dead_key, 0, extra - 1)) do
      redis.call('DEL', job_prefix .. old)
    end
    redis.call('ZREMRANGEBYRANK', dead_key, 0, extra - 1)
  end
end

-- True when this worker still holds the job's lease for this attempt; a
-- false answer means the job was recovered and the caller's result is stale.
local function holds_lease(lease_key, job_key, id, worker, attempt)
  if not redis.call('ZSCORE', lease_key, id) then return false end
  local f = redis.call('HMGET', job_key, 'state', 'worker', 'attempts')
  return f[1] == 'running' and f[2] == worker and f[3] == attempt
end

-- Wakes up to `count` (default 1) idle workers blocked on the queue's wake
-- list. The list is kept short: a token only means "look again", and a woken
-- worker drains what it can.
local function wake(wake_key, count)
  count = math.min(count or 1, 64)
  if count < 1 then return end
  -- A full list means no worker is waiting for tokens: one cheap check
  -- instead of a push and a trim on every enqueue to a busy queue.
  if count == 1 and redis.call('LLEN', wake_key) >= 64 then return end
  local tokens = {}
  for t = 1, count do tokens[t] = '1' end
  if redis.call('LPUSH', wake_key, unpack(tokens)) > 64 then redis.call('LTRIM', wake_key, 0, 63) end
end

"""#

    static func script(_ name: String, _ body: String) -> LuaScript {
        LuaScript(name: name, source: source + body)
    }
}

/// Keys of one queue in the order most scripts take them first: the four
/// pending lists, most urgent first.
extension KeySchema {
    func pendingLists(_ q: String) -> [String] { Priority.allCases.map { pending(q, $0) } }
}
