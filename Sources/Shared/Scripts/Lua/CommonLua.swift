/// The small Lua helpers several scripts share. Each script includes only the
/// pieces it names (LuaScript(name:uses:body:)).
enum CommonLua {
    /// Job options that are not stored when they have their default value
    /// (this saves a fifth of a pending job's memory); JobOptions holds the same numbers.
    static let defaults = LuaPiece("defaults", """
local DEFAULT_MAX_ATTEMPTS = \(JobOptions().maxAttempts)
local DEFAULT_RESULT_TTL = \(JobOptions().resultTTLSeconds)
""")

    /// Redis' clock, which every process agrees on.
    static let clock = LuaPiece("clock", #"""
-- Milliseconds (scores, deadlines) and microseconds (the job's timestamps,
-- precise enough to measure sub-ms enqueue-to-start latency), and the
-- microseconds as text for storing: Lua turns a number into text with
-- printf("%.14g"), which showed in Redis' profile when done for every job.
local function clock()
  local t = redis.call('TIME')
  local us = tonumber(t[1]) * 1000000 + tonumber(t[2])
  return math.floor(us / 1000), us, t[1] .. string.rep('0', 6 - #t[2]) .. t[2]
end

local function now_ms()
  local ms = clock()
  return ms
end
"""#)

    /// The keys of the queue a script works on, by name.
    static let queueKeys = LuaPiece("queue_keys", #"""
-- Every queue script takes its queue's keys first, in the order of QueueKeys
-- (Swift): KEYS[1..10] and ARGV[1..5]. Its own keys and arguments follow
-- (KEYS[11..], ARGV[6..]).
local function queue_keys()
  return {pending = {KEYS[1], KEYS[2], KEYS[3], KEYS[4]}, scheduled = KEYS[5], lease = KEYS[6], dead = KEYS[7],
          paused = KEYS[8], wake = KEYS[9], stats = KEYS[10],
          job_prefix = ARGV[1], idem_prefix = ARGV[2], throughput_prefix = ARGV[3], waiting_prefix = ARGV[4],
          channel = ARGV[5]}
end
"""#)

    /// The pending list (1 urgent … 4 low) of a job's `priority` field.
    static let priority = LuaPiece("priority_rank", #"""
-- A job without a priority field is normal (the field is not stored for normal jobs).
local PRIORITY_RANK = {urgent = 1, high = 2, normal = 3, low = 4}
local function priority_rank(name)
  return PRIORITY_RANK[name] or 3
end
"""#)

    static let countText = LuaPiece("count_text", #"""
-- A count as text, without number formatting for the usual small ones.
local SMALL_COUNTS = {'1', '2', '3', '4', '5', '6', '7', '8', '9', '10'}
local function count_text(n)
  return SMALL_COUNTS[n] or tostring(n)
end
"""#)

    static let wake = LuaPiece("wake", #"""
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
"""#)

    /// What every script that ends a job does besides changing its state.
    static let finishing = LuaPiece("finishing", #"""
-- Expires a finished job's hash (and its idempotency key) after ttl seconds.
local function expire_job(q, job_key, ttl)
  redis.call('EXPIRE', job_key, ttl)
  local idem = redis.call('HGET', job_key, 'idem')
  if idem then redis.call('EXPIRE', q.idem_prefix .. idem, ttl) end
end

-- Counts `n` (default 1) processed or failed jobs in the current minute's
-- bucket (kept an hour; the expiry is set once, when the bucket's field is created).
local function count_minute(q, field, now, n)
  n = n or 1
  local key = q.throughput_prefix .. math.floor(now / 60000)
  if redis.call('HINCRBY', key, field, n) == n then redis.call('EXPIRE', key, 3720) end
end

-- A client's unfinished jobs in the queue (field client:<id> of the stats
-- hash, for the client's max_pending): enqueue adds, the end of a job
-- (succeeded, dead, cancelled) takes away, a retry from the dead set adds.
-- Jobs enqueued without authentication have no client and count nowhere.
local function count_client_jobs(q, client, n)
  if not client or client == '' then return end
  local field = 'client:' .. client
  if redis.call('HINCRBY', q.stats, field, n) <= 0 then redis.call('HDEL', q.stats, field) end
end

-- Tells API long-polls that a job finished, only when one waits for it:
-- publishing every completion would cost every API loop a message per job.
local function notify_finished(q, id)
  if redis.call('EXISTS', q.waiting_prefix .. id) == 1 then redis.call('PUBLISH', q.channel, id) end
end
"""#)

    /// Who holds a running job.
    static let lease = LuaPiece("lease", #"""
-- True when this worker still holds the job's lease for this attempt; a
-- false answer means the job was recovered and the caller's result is stale.
local function holds_lease(q, id, worker, attempt)
  if not redis.call('ZSCORE', q.lease, id) then return false end
  local f = redis.call('HMGET', q.job_prefix .. id, 'state', 'worker', 'attempts')
  return f[1] == 'running' and f[2] == worker and f[3] == attempt
end

-- Marks a job that was running as queued again: who ran it, since when and
-- how far belong to the lost run, not to the next one.
local function queue_again(key)
  redis.call('HSET', key, 'state', 'queued')
  redis.call('HDEL', key, 'started_at', 'worker', 'progress')
end

-- Takes a job back from a run that must not count (given back, parked,
-- deferred; the caller checked the lease): out of the lease set, queued
-- again, its attempt not counted. Returns the attempts left; the caller
-- says where the job goes next.
local function uncount_claim(q, id)
  local key = q.job_prefix .. id
  redis.call('ZREM', q.lease, id)
  queue_again(key)
  return redis.call('HINCRBY', key, 'attempts', -1)
end
"""#)
}
