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
-- enqueue-to-start latency), and the microseconds as text for storing: Lua
-- turns a number into text with printf("%.14g"), which showed in Redis'
-- profile when done for every job.
local function clock()
  local t = redis.call('TIME')
  local us = tonumber(t[1]) * 1000000 + tonumber(t[2])
  return math.floor(us / 1000), us, t[1] .. string.rep('0', 6 - #t[2]) .. t[2]
end

-- The pending list (1 urgent … 4 low) of a job's `priority` field; a job
-- without one is normal (the field is not stored for normal jobs).
local PRIORITY_RANK = {urgent = 1, high = 2, normal = 3, low = 4}
local function priority_rank(name)
  return PRIORITY_RANK[name] or 3
end

-- A count as text, without number formatting for the usual small ones.
local SMALL_COUNTS = {'1', '2', '3', '4', '5', '6', '7', '8', '9', '10'}
local function count_text(n)
  return SMALL_COUNTS[n] or tostring(n)
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

-- Counts `n` (default 1) processed or failed jobs in the current minute's
-- bucket (kept an hour; the expiry is set once, when the bucket's field is created).
local function count_minute(throughput_prefix, field, now, n)
  n = n or 1
  local key = throughput_prefix .. math.floor(now / 60000)
  if redis.call('HINCRBY', key, field, n) == n then redis.call('EXPIRE', key, 3720) end
end

-- Tells API long-polls that a job finished, only when one waits for it:
-- publishing every completion would cost every API loop a message per job.
local function notify_finished(waiting_prefix, channel, id)
  if redis.call('EXISTS', waiting_prefix .. id) == 1 then redis.call('PUBLISH', channel, id) end
end

-- Moves a job to the dead set, kept dead_ttl seconds and at most dead_max
-- per queue (oldest dropped first, together with their hashes).
local function bury(dead_key, stats_key, job_key, job_prefix, idem_prefix, id, now, dead_ttl, dead_max, waiting_prefix, channel)
  redis.call('HSET', job_key, 'state', 'dead', 'finished_at', now * 1000)
  notify_finished(waiting_prefix, channel, id)
  redis.call('ZADD', dead_key, now, id)
  expire_job(job_key, idem_prefix, dead_ttl)
  redis.call('HINCRBY', stats_key, 'dead', 1)
  redis.call('ZREMRANGEBYSCORE', dead_key, '-inf', now - dead_ttl * 1000)
  local extra = redis.call('ZCARD', dead_key) - dead_max
  if extra > 0 then
    for _, old in ipairs(redis.call('ZRANGE', dead_key, 0, extra - 1)) do
      local old_idem = redis.call('HGET', job_prefix .. old, 'idem')
      if old_idem and idem_prefix ~= '' then redis.call('DEL', idem_prefix .. old_idem) end
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

-- The value of `field` in an HGETALL reply (a flat field, value list).
local function field_of(flat, field)
  for i = 1, #flat, 2 do
    if flat[i] == field then return flat[i + 1] end
  end
  return nil
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

-- Marks a job that was running as queued again: who ran it, since when and
-- how far belong to the lost run, not to the next one.
local function queue_again(key)
  redis.call('HSET', key, 'state', 'queued')
  redis.call('HDEL', key, 'started_at', 'worker', 'progress')
end

-- Returns a job this worker holds (this attempt) to the head of its pending
-- list without counting the attempt; false when it is no longer the worker's.
-- q: {job_prefix, lease, pending = {4 lists}, wake}
local function give_back(q, id, worker, attempt)
  local key = q.job_prefix .. id
  if not holds_lease(q.lease, key, id, worker, attempt) then return false end
  redis.call('ZREM', q.lease, id)
  queue_again(key)
  redis.call('HINCRBY', key, 'attempts', -1)
  redis.call('LPUSH', q.pending[priority_rank(redis.call('HGET', key, 'priority'))], id)
  wake(q.wake)
  return true
end

-- Records a job's success if this worker still holds its lease (else the job
-- was recovered or cancelled, and this result is stale: nothing changes).
-- The caller counts the stored ones (count_successes), once per call.
-- q: {job_prefix, idem_prefix, waiting_prefix, channel, lease}
local function complete_job(q, id, worker, attempt, result, now_us_text)
  local key = q.job_prefix .. id
  local f = redis.call('HMGET', key, 'state', 'worker', 'attempts', 'result_ttl_s', 'idem')
  if f[1] ~= 'running' or f[2] ~= worker or f[3] ~= attempt then return false end
  if redis.call('ZREM', q.lease, id) == 0 then return false end
  redis.call('HSET', key, 'state', 'succeeded', 'finished_at', now_us_text, 'result', result)
  local ttl = tonumber(f[4]) or DEFAULT_RESULT_TTL
  redis.call('EXPIRE', key, ttl)
  if f[5] then redis.call('EXPIRE', q.idem_prefix .. f[5], ttl) end
  notify_finished(q.waiting_prefix, q.channel, id)
  return true
end

-- Adds `n` stored successes to the queue's counters.
-- q: {stats, throughput_prefix}
local function count_successes(q, n, now)
  if n < 1 then return end
  redis.call('HINCRBY', q.stats, 'processed', n)
  count_minute(q.throughput_prefix, 'processed', now, n)
end

-- Receipts of the calls that claim jobs (see KeySchema.receipt):
-- "<token> <stored flags, or -> <id> <attempt> ...", kept one lease, written
-- when a call claimed jobs or reported completions, so that a loop whose reply
-- was lost can learn whether the call ran, and give back what it claimed.
-- A settle that found the call had not run leaves "<token> void": a fence.
-- receipt: {key ('' for none), token, ttl_ms (text), flags}

-- True when the receipt names this call's token or a later one: the call was
-- settled as not run (its loop gave up on it, and may have sent later ones),
-- so it arrives late and must change nothing.
local function fenced(receipt)
  if receipt.key == '' then return false end
  local last = redis.call('GET', receipt.key)
  return last ~= false and tonumber(string.match(last, '^%d+')) >= tonumber(receipt.token)
end

local function leave_receipt(receipt, claims)
  if not receipt or receipt.key == '' or (#claims == 0 and receipt.flags == '-') then return end
  local text = receipt.token .. ' ' .. receipt.flags
  if #claims > 0 then text = text .. ' ' .. table.concat(claims, ' ') end
  redis.call('SET', receipt.key, text, 'PX', receipt.ttl_ms)
end

-- Claims up to `want` jobs of a queue for a worker: promotes due scheduled
-- jobs, pops by priority, leases the jobs. Returns the fetch reply (see
-- FetchCall); each job's fields are returned as read, before this claim
-- updated them.
-- q: {job_prefix, pending = {4 lists}, scheduled, lease, paused, wake, stats (optional), receipt (optional)}
local function fetch_jobs(q, worker, lease_ms, promote_limit, want, now, now_us, now_us_text)
  -- Ids whose job hash is gone (evicted under a maxmemory policy, deleted by
  -- hand) are dropped as they come up, and counted in the queue's stats.
  local missing = 0
  local due = redis.call('ZRANGEBYSCORE', q.scheduled, '-inf', now, 'LIMIT', 0, promote_limit)
  for _, id in ipairs(due) do
    redis.call('ZREM', q.scheduled, id)
    local key = q.job_prefix .. id
    local f = redis.call('HMGET', key, 'state', 'priority')
    if f[1] == 'scheduled' then
      redis.call('HSET', key, 'state', 'queued')
      redis.call('RPUSH', q.pending[priority_rank(f[2])], id)
    elseif not f[1] and not f[2] then
      missing = missing + 1
    end
  end
  if #due > 0 then wake(q.wake) end
  local function count_missing()
    if missing > 0 and q.stats then redis.call('HINCRBY', q.stats, 'missing', missing) end
  end

  local claims = {}
  if redis.call('EXISTS', q.paused) == 1 then
    count_missing()
    leave_receipt(q.receipt, claims)
    return {'paused', -1, now}
  end

  -- Ids whose job was cancelled or has expired are dropped as they come up;
  -- the bound keeps one call short even after a mass cancel. LMPOP (Redis 7)
  -- takes from the most urgent non-empty list in one command.
  local reply = {'jobs', now_us}
  local leases = {}
  local deadline = tostring(now + lease_ms)
  local claimed, skipped = 0, 0
  while claimed < want and skipped < 1000 do
    local popped = redis.call('LMPOP', 4, q.pending[1], q.pending[2], q.pending[3], q.pending[4], 'LEFT',
                              'COUNT', want - claimed)
    if not popped then break end
    for _, id in ipairs(popped[2]) do
      local key = q.job_prefix .. id
      local job = redis.call('HGETALL', key)
      local state = field_of(job, 'state')
      -- A hash without a state is damaged: hand it out so the worker fails it
      -- with a clear error instead of dropping it silently.
      if state == 'queued' or (not state and #job > 0) then
        local attempts = count_text((tonumber(field_of(job, 'attempts')) or 0) + 1)
        redis.call('HSET', key, 'state', 'running', 'attempts', attempts, 'started_at', now_us_text, 'worker', worker)
        claims[#claims + 1] = id
        claims[#claims + 1] = attempts
        leases[#leases + 1] = deadline
        leases[#leases + 1] = id
        reply[#reply + 1] = id
        reply[#reply + 1] = job
        claimed = claimed + 1
      else
        skipped = skipped + 1
        if #job == 0 then missing = missing + 1 end
      end
    end
  end
  count_missing()
  leave_receipt(q.receipt, claims)
  if claimed > 0 then
    redis.call('ZADD', q.lease, unpack(leases))
    return reply
  end

  local next_due = redis.call('ZRANGE', q.scheduled, 0, 0, 'WITHSCORES')
  return {'empty', next_due[2] or -1, now}
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
