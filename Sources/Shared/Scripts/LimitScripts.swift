/// The scripts of a limit (`PUT /v1/limits/{name}`): each touches only the
/// limit's own keys (one hash tag, one Cluster slot; KeySchema says why a
/// limit has a slot of its own). The worker acquires a slot after claiming a
/// job that names the limit and releases it after recording the job's end
/// (LimitGate); the API defines, deletes and reads limits.
enum LimitLua {
    static let keys = LuaPiece("limit_keys", uses: [CommonLua.clock], #"""
-- KEYS[1] the limit's hash, KEYS[2] holders, KEYS[3] starts, KEYS[4] waiting (KeySchema)
local function limit_keys()
  return {def = KEYS[1], holders = KEYS[2], starts = KEYS[3], waiting = KEYS[4]}
end

-- The limit's definition and state; `units` is the budget refilled to now
-- (it refills continuously, units_per_minute per minute, up to that many).
local function read_limit(k, now)
  local f = redis.call('HMGET', k.def, 'concurrency', 'rate_count', 'rate_period_ms', 'units_per_minute',
                       'paused_until', 'units', 'units_at', 'defined')
  local l = {concurrency = tonumber(f[1]), rate_count = tonumber(f[2]), rate_period = tonumber(f[3]),
             upm = tonumber(f[4]), paused_until = tonumber(f[5]) or 0, defined = f[8] == '1'}
  if l.upm then
    local units, at = tonumber(f[6]) or l.upm, tonumber(f[7]) or now
    l.units = math.min(l.upm, units + math.max(0, now - at) * l.upm / 60000)
  end
  return l
end

local function store_units(k, l, now)
  redis.call('HSET', k.def, 'units', string.format('%.3f', l.units), 'units_at', now)
end

-- Keys that hold entries with deadlines expire with their last entry, so an
-- unused limit leaves nothing behind. (PEXPIRE GT, then NX for a key without
-- a deadline, takes two commands whenever the deadline would not move, which
-- is most calls on a busy limit: several calls fall in the same millisecond.
-- PTTL takes one then, and two only when the deadline moves.)
local function expire_at_least(key, ms)
  if redis.call('PTTL', key) < ms then redis.call('PEXPIRE', key, ms) end
end

-- The queues whose parked jobs may run now; the set is emptied (each queue
-- gets a wake token from the caller).
local function take_waiting(k)
  local waiting = redis.call('SMEMBERS', k.waiting)
  if #waiting > 0 then redis.call('DEL', k.waiting) end
  return waiting
end

-- A call's view of the limit: read once, changed in memory by each
-- operation, written back once (end_session): a batch of operations costs
-- little more than one.
local function limit_session(k, now)
  return {k = k, now = now, l = read_limit(k, now), units_changed = false, hold = 0, started = false}
end

-- The holds, counted once per call and kept up to date by its operations.
local function holders_count(s)
  if not s.count then s.count = redis.call('ZCARD', s.k.holders) end
  return s.count
end

-- The queues to wake once the call's releases are done: none while paused.
local function session_wake(s)
  if not s.freed or s.l.paused_until > s.now then return {} end
  return take_waiting(s.k)
end

local function end_session(s)
  if s.units_changed then store_units(s.k, s.l, s.now) end
  -- Keys that hold entries with deadlines expire with their last entry.
  if s.hold > 0 then expire_at_least(s.k.holders, s.hold) end
  if s.started then expire_at_least(s.k.starts, s.l.rate_period) end
end

-- Whether job `id` holds a slot already (granted before, and the reply was
-- lost, so the worker asks again); its hold is then renewed.
local function held_already(s, id, hold)
  if not redis.call('ZSCORE', s.k.holders, id) then return false end
  redis.call('ZADD', s.k.holders, s.now + hold, id)
  return true
end

-- A refusal: `queue` joins the waiting set, woken when a slot frees.
local function refuse_slot(s, queue, reason, ms)
  redis.call('SADD', s.k.waiting, queue)
  return {0, reason, math.max(1, math.ceil(ms))}
end

-- Drops the holds of crashed workers, which lapse with their leases; returns
-- how many were dropped.
local function drop_lapsed(s)
  local n = redis.call('ZREMRANGEBYSCORE', s.k.holders, '-inf', s.now)
  s.count = holders_count(s) - n
  return n
end

-- Takes a slot for job `id` (see AcquireLimitCall): {1}, or {0, reason, ms}
-- with `queue` added to the waiting set.
local function acquire_slot(s, id, cost, hold, queue)
  local k, l, now = s.k, s.l, s.now
  -- Granted before: asked only where it would matter, since a hold is the
  -- same member anyway: a rate or a budget would count it twice, a full
  -- limit would refuse it.
  if (l.rate_count or l.upm) and held_already(s, id, hold) then return {1} end
  if l.paused_until > now then return refuse_slot(s, queue, 'paused', l.paused_until - now) end
  -- Lapsed holds are dropped when they would count (a full limit), and
  -- with the key when every hold lapsed.
  if l.concurrency and holders_count(s) >= l.concurrency and (drop_lapsed(s) == 0 or s.count >= l.concurrency) then
    if held_already(s, id, hold) then return {1} end
    -- At the latest when the oldest hold would lapse; a release wakes sooner.
    local first = redis.call('ZRANGE', k.holders, 0, 0, 'WITHSCORES')
    return refuse_slot(s, queue, 'concurrency', (tonumber(first[2]) or now + 1000) - now)
  end
  if l.rate_count then
    redis.call('ZREMRANGEBYSCORE', k.starts, '-inf', now - l.rate_period)
    if redis.call('ZCARD', k.starts) >= l.rate_count then
      local first = redis.call('ZRANGE', k.starts, 0, 0, 'WITHSCORES')
      return refuse_slot(s, queue, 'rate', tonumber(first[2]) + l.rate_period - now)
    end
  end
  if l.upm then
    -- A job that costs more than a whole minute's budget runs when it is full.
    local need = math.min(cost, l.upm)
    if l.units < need or l.units <= 0 then
      return refuse_slot(s, queue, 'units', (math.max(need, 1) - l.units) * 60000 / l.upm)
    end
    l.units = l.units - cost
    s.units_changed = true
  end
  if redis.call('ZADD', k.holders, now + hold, id) == 1 and s.count then s.count = s.count + 1 end
  s.hold = math.max(s.hold, hold)
  if l.rate_count then
    -- One member per attempt, so that an undone acquire can take its start
    -- back (a deferred job's next run reuses it: the window then holds the
    -- later start only).
    redis.call('ZADD', k.starts, now, id)
    s.started = true
  end
  return {1}
end

-- Whether `n` acquires in a row would all be granted, whatever their jobs:
-- no pause, no rate, no budget, and room for all of them. A call then takes
-- their holds in one ZADD (grant_holds) instead of one each.
local function grants_all(s, n)
  local l = s.l
  if l.paused_until > s.now or l.rate_count or l.upm then return false end
  return not l.concurrency or holders_count(s) + n <= l.concurrency
end

-- Takes the holds that grants_all vouched for. `entries`: deadline, holder,
-- deadline, holder... as ZADD takes them (deadline: now + hold, as text).
local function grant_holds(s, entries, hold)
  local added = redis.call('ZADD', s.k.holders, unpack(entries))
  if s.count then s.count = s.count + added end
  s.hold = math.max(s.hold, hold)
end

-- Takes back an acquire whose job did not run: its hold, its start and its cost.
local function undo_acquire(s, id, cost)
  local k, l = s.k, s.l
  if redis.call('ZREM', s.k.holders, id) == 0 then return end
  if s.count then s.count = s.count - 1 end
  s.freed = true
  if l.rate_count then redis.call('ZREM', k.starts, id) end
  if l.upm and cost > 0 then
    l.units = math.min(l.upm, l.units + cost)
    s.units_changed = true
  end
end

-- Gives back the slots of holders ARGV[first..last], whose releases settle
-- nothing (no usage to charge, no pause), in one ZREM: what release_slot
-- would do for each.
local function release_slots(s, first, last)
  if last < first then return end
  local n = redis.call('ZREM', s.k.holders, unpack(ARGV, first, last))
  if n > 0 then
    if s.count then s.count = s.count - n end
    s.freed = true
  end
end

-- Gives back job `id`'s slot (see ReleaseLimitCall); session_wake then says
-- which queues to wake.
local function release_slot(s, id, delta, pause)
  local k, l, now = s.k, s.l, s.now
  -- Usage is settled once: a release sent again (its reply was lost), or
  -- after the hold lapsed, finds no hold and charges nothing.
  local held = redis.call('ZREM', k.holders, id) == 1
  if held then
    if s.count then s.count = s.count - 1 end
    s.freed = true
  end
  if held and delta ~= 0 and l.upm then
    l.units = math.min(l.upm, l.units - delta)
    s.units_changed = true
  end
  if pause > 0 and now + pause > l.paused_until then
    l.paused_until = now + pause
    redis.call('HSET', k.def, 'paused_until', now + pause)
    -- A limit nobody defined keeps its pause only for the pause.
    if not l.defined then expire_at_least(k.def, pause) end
  end
end
"""#)
}

/// Takes one of a limit's slots for a claimed job, or says why not and for how long.
public struct AcquireLimitCall: ScriptCall {
    public static let script = LuaScript(name: "acquire_limit", uses: [LimitLua.keys], body: #"""
-- KEYS[1..4] the limit's (limit_keys)
-- ARGV[1]  the holder (job id @ attempt)
-- ARGV[2]  cost: units of the budget the job declared (0 none)
-- ARGV[3]  hold ms: the worker's lease; the hold lapses then unless extended
-- ARGV[4]  the job's queue (woken when a slot frees, after a refusal)
-- Output:  {1}  granted: the job holds a slot until released or the hold lapses
--          {0, reason, ms}  refused (paused, concurrency, rate or units); ms: when
--          to ask again at the latest; the queue joins the waiting set
local s = limit_session(limit_keys(), now_ms())
local out = acquire_slot(s, ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4])
end_session(s)
return out
"""#)

    public enum Outcome: Equatable, Sendable {
        case granted
        /// `reason`: paused, concurrency, rate or units; ask again within `retryInMs`.
        case refused(reason: String, retryInMs: Int64)
    }

    public let limit: String
    public let holder: LimitHolder
    public let cost: Int64
    public let holdMs: Int64
    let schema: KeySchema

    public init(schema: KeySchema, limit: String, holder: LimitHolder, cost: Int64, holdMs: Int64) {
        self.schema = schema
        self.limit = limit
        self.holder = holder
        self.cost = cost
        self.holdMs = holdMs
    }

    public var script: LuaScript { AcquireLimitCall.script }
    public var keys: [String] { schema.limitKeys(limit) }
    public var args: [String] { [holder.member, String(cost), String(holdMs), holder.jobID.queue] }

    public func parse(_ reply: RedisReply) throws -> Outcome {
        guard let parts = reply.array, let first = parts.first?.int else { throw unexpected(reply) }
        if first == 1 { return .granted }
        guard parts.count == 3, let reason = parts[1].string, let ms = parts[2].int else { throw unexpected(reply) }
        return .refused(reason: reason, retryInMs: ms)
    }
}

/// Gives back a job's slot when its run ended, settles its usage and, when
/// the provider refused, pauses the limit.
public struct ReleaseLimitCall: ScriptCall {
    public static let script = LuaScript(name: "release_limit", uses: [LimitLua.keys], body: #"""
-- KEYS[1..4] the limit's (limit_keys)
-- ARGV[1]  the holder (job id @ attempt)
-- ARGV[2]  units to charge on top of what was charged at the start (reported
--          usage minus the declared cost; negative gives back; 0 none)
-- ARGV[3]  pause ms: the provider asked to wait that long (0 none)
-- Output:  the queues to wake (their parked jobs may run now); none while paused
local s = limit_session(limit_keys(), now_ms())
release_slot(s, ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]))
local out = session_wake(s)
end_session(s)
return out
"""#)

    public let limit: String
    public let holder: LimitHolder
    public let extraUnits: Int64
    public let pauseMs: Int64
    let schema: KeySchema

    public init(schema: KeySchema, limit: String, holder: LimitHolder, extraUnits: Int64 = 0, pauseMs: Int64 = 0) {
        self.schema = schema
        self.limit = limit
        self.holder = holder
        self.extraUnits = extraUnits
        self.pauseMs = pauseMs
    }

    public var script: LuaScript { ReleaseLimitCall.script }
    public var keys: [String] { schema.limitKeys(limit) }
    public var args: [String] { [holder.member, String(extraUnits), String(pauseMs)] }

    /// The queues to wake.
    public func parse(_ reply: RedisReply) throws -> [String] {
        guard let items = reply.array else { throw unexpected(reply) }
        return items.compactMap(\.string)
    }
}

/// Renews the holds of a worker's running jobs, with their leases.
public struct ExtendLimitHoldsCall: ScriptCall {
    public static let script = LuaScript(name: "extend_limit_holds", uses: [LimitLua.keys], body: #"""
-- KEYS[1..4] the limit's (limit_keys)
-- ARGV[1]    hold ms
-- ARGV[2..]  holders (job id @ attempt)
-- Output:    how many holds were renewed (a lapsed one is not taken again)
local now = now_ms()
local k = limit_keys()
local hold, renewed = tonumber(ARGV[1]), 0
for i = 2, #ARGV do renewed = renewed + redis.call('ZADD', k.holders, 'XX', 'CH', now + hold, ARGV[i]) end
if renewed > 0 then expire_at_least(k.holders, hold) end
return renewed
"""#)

    public let limit: String
    public let holdMs: Int64
    public let holders: [LimitHolder]
    let schema: KeySchema

    public init(schema: KeySchema, limit: String, holdMs: Int64, holders: [LimitHolder]) {
        self.schema = schema
        self.limit = limit
        self.holdMs = holdMs
        self.holders = holders
    }

    public var script: LuaScript { ExtendLimitHoldsCall.script }
    public var keys: [String] { schema.limitKeys(limit) }
    public var args: [String] { [String(holdMs)] + holders.map(\.member) }

    public func parse(_ reply: RedisReply) throws -> Int {
        guard let n = reply.int else { throw unexpected(reply) }
        return Int(n)
    }
}

/// What a limit allows. Every bound is optional: a limit with none only
/// counts (and can be paused by a provider's back-off).
public struct LimitDefinition: Equatable, Sendable {
    public var concurrency: Int64?
    public var rateCount: Int64?
    public var ratePeriodMs: Int64?
    public var unitsPerMinute: Int64?

    public init(concurrency: Int64? = nil, rateCount: Int64? = nil, ratePeriodMs: Int64? = nil, unitsPerMinute: Int64? = nil) {
        self.concurrency = concurrency
        self.rateCount = rateCount
        self.ratePeriodMs = ratePeriodMs
        self.unitsPerMinute = unitsPerMinute
    }

    /// As the API shows it (and takes it).
    public func writeFields(to w: inout JSONWriter) {
        w.field("concurrency", concurrency)
        if let rateCount, let ratePeriodMs {
            w.key("rate")
            w.beginObject()
            w.field("count", rateCount)
            w.field("period_ms", ratePeriodMs)
            w.endObject()
        } else {
            w.rawField("rate", nil)
        }
        w.field("units_per_minute", unitsPerMinute)
    }
}

/// Creates or replaces a limit's definition (`PUT /v1/limits/{name}`); its
/// state (running jobs, the rate window, the budget spent) carries over.
public struct DefineLimitCall: ScriptCall {
    public static let script = LuaScript(name: "define_limit", uses: [LimitLua.keys], body: #"""
-- KEYS[1..4] the limit's (limit_keys)
-- ARGV[1]  concurrency  ARGV[2] rate count  ARGV[3] rate period ms
-- ARGV[4]  units per minute            ('' = no such bound)
-- Output:  the queues to wake (a changed limit may let parked jobs run)
local now = now_ms()
local k = limit_keys()
local names = {'concurrency', 'rate_count', 'rate_period_ms', 'units_per_minute'}
-- The budget as it was, refilled to now, before the rate changes.
local before = read_limit(k, now)
redis.call('HSET', k.def, 'defined', '1')
for i, name in ipairs(names) do
  if ARGV[i] == '' then redis.call('HDEL', k.def, name) else redis.call('HSET', k.def, name, ARGV[i]) end
end
redis.call('PERSIST', k.def)
local upm = tonumber(ARGV[4])
if not upm then
  redis.call('HDEL', k.def, 'units', 'units_at')
else
  -- A new budget starts full; a changed one keeps what was spent, capped.
  before.upm = upm
  before.units = math.min(upm, before.units or upm)
  store_units(k, before, now)
end
return take_waiting(k)
"""#)

    public let limit: String
    public let definition: LimitDefinition
    let schema: KeySchema

    public init(schema: KeySchema, limit: String, definition: LimitDefinition) {
        self.schema = schema
        self.limit = limit
        self.definition = definition
    }

    public var script: LuaScript { DefineLimitCall.script }
    public var keys: [String] { schema.limitKeys(limit) }
    public var args: [String] {
        let d = definition
        return [d.concurrency, d.rateCount, d.ratePeriodMs, d.unitsPerMinute].map { $0.map(String.init) ?? "" }
    }

    /// The queues to wake.
    public func parse(_ reply: RedisReply) throws -> [String] {
        guard let items = reply.array else { throw unexpected(reply) }
        return items.compactMap(\.string)
    }
}

/// Removes a limit's definition and pause (`DELETE /v1/limits/{name}`): its
/// jobs run unbounded. Running holds stay counted until they end, so a limit
/// defined again at once still sees them.
public struct DeleteLimitCall: ScriptCall {
    public static let script = LuaScript(name: "delete_limit", uses: [LimitLua.keys], body: #"""
-- KEYS[1..4] the limit's (limit_keys)
-- Output:  {1 when it was defined else 0, the queues to wake...}
local k = limit_keys()
local existed = redis.call('HGET', k.def, 'defined') == '1' and 1 or 0
redis.call('DEL', k.def)
local out = take_waiting(k)
table.insert(out, 1, existed)
return out
"""#)

    public let limit: String
    let schema: KeySchema

    public init(schema: KeySchema, limit: String) {
        self.schema = schema
        self.limit = limit
    }

    public var script: LuaScript { DeleteLimitCall.script }
    public var keys: [String] { schema.limitKeys(limit) }
    public var args: [String] { [] }

    /// Whether the limit was defined, and the queues to wake.
    public func parse(_ reply: RedisReply) throws -> (existed: Bool, wake: [String]) {
        guard let items = reply.array, let first = items.first?.int else { throw unexpected(reply) }
        return (first == 1, items.dropFirst().compactMap(\.string))
    }
}

/// A limit's definition and current use, for `GET /v1/limits`. Reads only.
public struct LimitStatusCall: ScriptCall {
    public static let script = LuaScript(name: "limit_status", uses: [LimitLua.keys], body: #"""
-- KEYS[1..4] the limit's (limit_keys)
-- Output: {defined 0/1, concurrency, rate count, rate period ms, units per minute
--          ('' = none), paused for ms (0 = not), running, starts in the rate window,
--          units available (whole, '' = no budget), {waiting queues...}}
local now = now_ms()
local k = limit_keys()
local l = read_limit(k, now)
local recent = 0
if l.rate_count then recent = redis.call('ZCOUNT', k.starts, '(' .. (now - l.rate_period), '+inf') end
local function text(n) return n and string.format('%d', n) or '' end
return {l.defined and 1 or 0, text(l.concurrency), text(l.rate_count), text(l.rate_period), text(l.upm),
        math.max(0, l.paused_until - now), redis.call('ZCOUNT', k.holders, '(' .. now, '+inf'), recent,
        l.units and string.format('%d', math.floor(l.units)) or '', redis.call('SMEMBERS', k.waiting)}
"""#)

    public struct Status: Sendable {
        public var name: String
        public var defined: Bool
        public var definition: LimitDefinition
        public var pausedForMs: Int64
        public var running: Int64
        public var startsInWindow: Int64
        public var unitsAvailable: Int64?
        public var waitingQueues: [String]

        public func writeJSON(to w: inout JSONWriter) {
            w.beginObject()
            w.field("key", name)
            definition.writeFields(to: &w)
            w.field("running", running)
            if definition.rateCount != nil { w.field("started_in_window", startsInWindow) }
            if let unitsAvailable { w.field("units_available", unitsAvailable) }
            w.field("paused_for_ms", pausedForMs)
            w.field("waiting_queues", JSONValue.array(waitingQueues.sorted().map { .string($0) }))
            w.endObject()
        }
    }

    public let limit: String
    let schema: KeySchema

    public init(schema: KeySchema, limit: String) {
        self.schema = schema
        self.limit = limit
    }

    public var script: LuaScript { LimitStatusCall.script }
    public var keys: [String] { schema.limitKeys(limit) }
    public var args: [String] { [] }

    public func parse(_ reply: RedisReply) throws -> Status {
        guard let p = reply.array, p.count == 10, let defined = p[0].int, let paused = p[5].int, let running = p[6].int,
              let recent = p[7].int, let waiting = p[9].array else { throw unexpected(reply) }
        func number(_ r: RedisReply) -> Int64? { r.string.flatMap { Int64($0) } }
        let definition = LimitDefinition(concurrency: number(p[1]), rateCount: number(p[2]), ratePeriodMs: number(p[3]),
                                         unitsPerMinute: number(p[4]))
        return Status(name: limit, defined: defined == 1, definition: definition, pausedForMs: paused, running: running,
                      startsInWindow: recent, unitsAvailable: number(p[8]), waitingQueues: waiting.compactMap(\.string))
    }
}

/// Who holds a limit's slot: one attempt of one job. A run that lost its
/// lease and reports late releases its own hold, never the next attempt's.
public struct LimitHolder: Hashable, Sendable {
    public let jobID: JobID
    public let attempt: Int

    public init(_ jobID: JobID, attempt: Int) {
        self.jobID = jobID
        self.attempt = attempt
    }

    /// The member in the holders and starts sets.
    public var member: String { "\(jobID.text)@\(attempt)" }
}

extension KeySchema {
    /// KEYS of every limit script, in limit_keys' order.
    public func limitKeys(_ name: String) -> [String] {
        [limit(name), limitHolders(name), limitStarts(name), limitWaiting(name)]
    }
}

/// Several acquires and releases of one limit in one call: the worker's loops
/// that reach the same limit at the same moment go together (LimitBatcher),
/// as their completions do, so a busy limit costs a fraction of a round trip
/// per job rather than two.
public struct LimitBatchCall: ScriptCall {
    public static let script = LuaScript(name: "limit_batch", uses: [LimitLua.keys], body: #"""
-- KEYS[1..4] the limit's (limit_keys)
-- ARGV, per operation in order: 'a', holder, cost, hold ms, queue (acquire)
--                            or 'r', holder, extra units, pause ms (release)
--                            or 'u', holder, cost (undo an acquire: the job did not run)
-- Output: {queues to wake, then per operation: {1} or {0, reason, ms} (acquire), 1 (release, undo)}
local s = limit_session(limit_keys(), now_ms())
local out = {}
local i = 1
while i <= #ARGV do
  if ARGV[i] == 'a' then
    out[#out + 1] = acquire_slot(s, ARGV[i + 1], tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3]), ARGV[i + 4])
    i = i + 5
  elseif ARGV[i] == 'u' then
    undo_acquire(s, ARGV[i + 1], tonumber(ARGV[i + 2]))
    out[#out + 1] = 1
    i = i + 3
  else
    release_slot(s, ARGV[i + 1], tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3]))
    out[#out + 1] = 1
    i = i + 4
  end
end
table.insert(out, 1, session_wake(s))
end_session(s)
return out
"""#)

    public enum Operation: Sendable {
        case acquire(LimitHolder, cost: Int64, holdMs: Int64)
        case release(LimitHolder, extraUnits: Int64, pauseMs: Int64)
        /// Gives back a slot taken for a job that did not run (its other limit refused it).
        case undo(LimitHolder, cost: Int64)
    }

    public let limit: String
    public let operations: [Operation]
    let schema: KeySchema

    public init(schema: KeySchema, limit: String, operations: [Operation]) {
        self.schema = schema
        self.limit = limit
        self.operations = operations
    }

    public var script: LuaScript { LimitBatchCall.script }
    public var keys: [String] { schema.limitKeys(limit) }
    public var args: [String] {
        operations.flatMap { op -> [String] in
            switch op {
            case .acquire(let h, let cost, let hold): return ["a", h.member, String(cost), String(hold), h.jobID.queue]
            case .release(let h, let extra, let pause): return ["r", h.member, String(extra), String(pause)]
            case .undo(let h, let cost): return ["u", h.member, String(cost)]
            }
        }
    }

    /// The queues to wake, and per operation the acquire's outcome (nil for a release).
    public func parse(_ reply: RedisReply) throws -> (wake: [String], outcomes: [AcquireLimitCall.Outcome?]) {
        guard let parts = reply.array, parts.count == operations.count + 1, let wake = parts[0].array else { throw unexpected(reply) }
        var outcomes: [AcquireLimitCall.Outcome?] = []
        for (op, part) in zip(operations, parts.dropFirst()) {
            guard case .acquire = op else { outcomes.append(nil); continue }
            guard let items = part.array, let first = items.first?.int else { throw unexpected(reply) }
            if first == 1 { outcomes.append(.granted); continue }
            guard items.count == 3, let reason = items[1].string, let ms = items[2].int else { throw unexpected(reply) }
            outcomes.append(.refused(reason: reason, retryInMs: ms))
        }
        return (wake.compactMap(\.string), outcomes)
    }
}
