/// The Lua side of job event logs (KeySchema.events): what every script that
/// changes a job's state appends, and how a log starts.
///
/// Why a log exists only on demand: most jobs are never watched and stream
/// nothing, and for them a log would be a second key and ~200 bytes per job,
/// written on every state change. A log starts when a client first asks for
/// the job's events (OpenEventsCall) or its handler first streams
/// (AppendEventsCall); from then on every state change is appended by the
/// script that makes it. A late log starts from the job's hash: its creation
/// and its state at that moment (earlier attempts' events are not known).
enum EventLogLua {
    /// Most entries kept in a queue's log (trimmed approximately, so cheaply).
    static let queueLogMaxEntries = 10_000

    static let log = LuaPiece("event_log", #"""
-- Entry fields: t kind (state, progress, chunk, event, dropped), a attempt,
-- s state, n event name, d data (JSON, sealed like the job's fields: the
-- result of a `succeeded` state, the progress, or the chunk or event's data;
-- plain text for `dropped`), e the error (as the job's error field), r run_at
-- µs, at µs (only on entries written after the fact: a live entry's time is
-- its id). A queue's log: id, s, a, c (the job's client).
local QUEUE_LOG_MAX = \#(queueLogMaxEntries)

-- The log keys and channel, built from the job prefix (KeySchema explains why).
local function event_keys(q)
  if not q.events_prefix then
    local base = string.sub(q.job_prefix, 1, -5)
    q.events_prefix = base .. 'events:'
    q.queue_events = base .. 'queue-events'
    q.events_channel = string.sub(q.channel, 1, -9) .. 'events'
    q.queue_name = string.match(q.job_prefix, '{(.*)}')
  end
  return q
end

-- Whether the queue's log exists, checked once per call; told: whether this
-- call published its name already.
local queue_log = {checked = false, live = false, told = false}

local function log_queue_state(q, id, state, attempt)
  if not queue_log.checked then
    queue_log.checked = true
    queue_log.live = redis.call('EXISTS', q.queue_events) == 1
  end
  if not queue_log.live then return end
  -- The job's client, so that a follower sees only its own jobs' changes.
  local client = redis.call('HGET', q.job_prefix .. id, 'client') or ''
  redis.call('XADD', q.queue_events, 'MAXLEN', '~', QUEUE_LOG_MAX, '*', 'id', id, 's', state, 'a', attempt, 'c', client)
  if not queue_log.told then
    queue_log.told = true
    redis.call('PUBLISH', q.events_channel, q.queue_name)
  end
end

-- Appends a state entry to the job's log when it has one (and to the queue's
-- while a dashboard follows it). extra: more field, value pairs; ttl: for a
-- terminal state, the job's expiry, which its log shares; flag: the job's
-- `ev` field when the caller read it with the job's other fields (then no
-- EXISTS is needed: open_log sets it), nil when it did not.
local function log_state(q, id, state, attempt, extra, ttl, flag)
  event_keys(q)
  log_queue_state(q, id, state, attempt)
  local key = q.events_prefix .. id
  if flag == false or (flag == nil and redis.call('EXISTS', key) == 0) then return end
  local fields = {'t', 'state', 's', state, 'a', attempt}
  if extra then for _, v in ipairs(extra) do fields[#fields + 1] = v end end
  redis.call('XADD', key, '*', unpack(fields))
  if ttl then redis.call('EXPIRE', key, ttl) end
  redis.call('PUBLISH', q.events_channel, id)
end

"""#)

    /// Starting, keeping and removing logs: only the scripts that do it
    /// include this (a piece's functions are made on every call).
    static let lifecycle = LuaPiece("event_log_lifecycle", uses: [log], #"""
-- Removes a job's log with the job (deleted, purged, dropped from the dead set).
local function delete_log(q, id)
  if redis.call('DEL', event_keys(q).events_prefix .. id) == 1 then
    -- Its followers learn that it is gone.
    redis.call('PUBLISH', q.events_channel, id)
  end
end

-- A dead job retried keeps its log, which no longer expires.
local function keep_log(q, id)
  redis.call('PERSIST', event_keys(q).events_prefix .. id)
end

-- Starts a job's log from its hash when it has none: its creation, then its
-- state now. Returns the job's state, or nil when the job does not exist.
local function open_log(q, id)
  event_keys(q)
  local key = q.events_prefix .. id
  local job = q.job_prefix .. id
  local f = redis.call('HMGET', job, 'state', 'attempts', 'created_at', 'started_at', 'finished_at', 'run_at', 'error',
                       'result')
  local state = f[1]
  if not state then return nil end
  if redis.call('EXISTS', key) == 1 then return state end
  -- Read by the hot scripts with the fields they already fetch (log_state's flag).
  redis.call('HSET', job, 'ev', '1')
  local attempts = f[2] or '0'
  local function add(s, a, at, ...)
    local fields = {'t', 'state', 's', s, 'a', a}
    if at then fields[#fields + 1] = 'at'; fields[#fields + 1] = at end
    for _, v in ipairs({...}) do fields[#fields + 1] = v end
    redis.call('XADD', key, '*', unpack(fields))
  end
  if state == 'scheduled' and attempts == '0' then
    add('scheduled', '0', f[3], 'r', f[6] or '')
  else
    add('queued', '0', f[3])
  end
  if f[4] and state ~= 'queued' and state ~= 'scheduled' then add('running', attempts, f[4]) end
  if state == 'scheduled' and attempts ~= '0' then
    add('scheduled', attempts, nil, 'r', f[6] or '', 'e', f[7] or '')
  elseif state == 'succeeded' then
    add(state, attempts, f[5], 'd', f[8] or 'null')
  elseif state == 'cancelled' then
    add(state, attempts, f[5])
  elseif state == 'dead' then
    add('dead', attempts, f[5], 'e', f[7] or '')
  end
  local ttl = redis.call('PTTL', job)
  if ttl > 0 then redis.call('PEXPIRE', key, ttl) end
  return state
end
"""#)
}
