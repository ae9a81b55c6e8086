/// Where a claimed job goes when it may not run now, in its queue's slot.
enum ParkLua {
    static let keys = LuaPiece("parked_keys", #"""
-- A queue's parked lists and their set, built from the job prefix (KeySchema:
-- `limited:<name>` and `limited`).
local function parked_list(q, name)
  return string.sub(q.job_prefix, 1, -5) .. 'limited:' .. name
end

local function parked_set(q)
  return string.sub(q.job_prefix, 1, -5) .. 'limited'
end

-- The queue's parked lists (one per limit with jobs waiting), and how many
-- jobs they hold.
local function parked_lists(q)
  local lists = {}
  for _, name in ipairs(redis.call('SMEMBERS', parked_set(q))) do lists[#lists + 1] = parked_list(q, name) end
  return lists
end

local function parked_count(q)
  local n = 0
  for _, list in ipairs(parked_lists(q)) do n = n + redis.call('LLEN', list) end
  return n
end
"""#)

    /// Parking itself, shared by ParkCall and the limits a complete-and-fetch
    /// call takes in the same call (CallLimits, `admit_in_call`).
    static let park = LuaPiece("park_job", uses: [keys, CommonLua.lease, EventLogLua.log], #"""
-- Parks job `id`, which this worker holds (the caller checked), behind limit
-- `name`: queued again without counting the attempt, on the queue's list for
-- the limit; at its head when it came from that list (it keeps its turn).
local function park_job(q, id, name, at_head)
  log_state(q, id, 'queued', uncount_claim(q, id))
  redis.call(at_head and 'LPUSH' or 'RPUSH', parked_list(q, name), id)
  redis.call('SADD', parked_set(q), name)
  -- Where it waits, for a cancel to find it.
  redis.call('HSET', q.job_prefix .. id, 'parked', name)
end
"""#)
}

/// Parks a job its limit refused: back to queued without counting the attempt,
/// on the queue's list for that limit, from which a worker claims it
/// (FetchCall with `parkedLimit`) once the limit allows.
public struct ParkCall: ScriptCall {
    public static let script = LuaScript(name: "park", uses: [CommonLua.queueKeys, ParkLua.park], body: #"""
-- KEYS[1..10], ARGV[1..5] the queue's keys (QueueKeys)
-- ARGV[6]   worker id
-- ARGV[7]   job id
-- ARGV[8]   attempt number the worker claimed
-- ARGV[9]   the limit's name
-- ARGV[10]  'head' (it came from the parked list: keep its turn) or 'tail'
-- Output:   1 parked, 0 the job was no longer this worker's (nothing changed)
local q = queue_keys()
local id, name = ARGV[7], ARGV[9]
if not holds_lease(q, id, ARGV[6], ARGV[8]) then return 0 end
park_job(q, id, name, ARGV[10] == 'head')
return 1
"""#)

    public let jobID: JobID
    public let workerID: String
    public let attempt: Int
    public let limit: String
    public let atHead: Bool
    let schema: KeySchema

    public init(schema: KeySchema, jobID: JobID, workerID: String, attempt: Int, limit: String, atHead: Bool) {
        self.schema = schema
        self.jobID = jobID
        self.workerID = workerID
        self.attempt = attempt
        self.limit = limit
        self.atHead = atHead
    }

    public var script: LuaScript { ParkCall.script }
    public var keys: [String] { schema.queueKeys(jobID.queue).keys }
    public var args: [String] {
        schema.queueKeys(jobID.queue).args + [workerID, jobID.text, String(attempt), limit, atHead ? "head" : "tail"]
    }

    /// False when the job had left this worker (recovered, cancelled).
    public func parse(_ reply: RedisReply) throws -> Bool {
        guard let n = reply.int else { throw unexpected(reply) }
        return n == 1
    }
}

/// A provider's back-off (`retry_after_ms`, an HTTP 429): the job runs again
/// after the delay without using an attempt.
public struct DeferCall: ScriptCall {
    public static let script = LuaScript(name: "defer", uses: [CommonLua.clock, CommonLua.queueKeys, CommonLua.lease,
                                                               CommonLua.wake, EventLogLua.log], body: #"""
-- KEYS[1..10], ARGV[1..5] the queue's keys (QueueKeys)
-- ARGV[6]   worker id
-- ARGV[7]   job id
-- ARGV[8]   attempt number the worker claimed
-- ARGV[9]   delay ms
-- ARGV[10]  why (the error field: {"message": ..., "attempt": n})
-- ARGV[11]  most back-offs a job gets without using an attempt
-- Output:   1 deferred, 0 the job was no longer this worker's, 2 it had its
--           most back-offs (nothing changed: the worker records a failure)
local q = queue_keys()
local id = ARGV[7]
if not holds_lease(q, id, ARGV[6], ARGV[8]) then return 0 end
local now = now_ms()
local key = q.job_prefix .. id
if (tonumber(redis.call('HGET', key, 'deferrals')) or 0) >= tonumber(ARGV[11]) then return 2 end
redis.call('HINCRBY', key, 'deferrals', 1)
local run_at = now + tonumber(ARGV[9])
local attempts = uncount_claim(q, id)
redis.call('HSET', key, 'state', 'scheduled', 'run_at', run_at * 1000, 'error', ARGV[10])
redis.call('ZADD', q.scheduled, run_at, id)
redis.call('HINCRBY', q.stats, 'deferred', 1)
log_state(q, id, 'scheduled', attempts, {'e', ARGV[10], 'r', run_at * 1000})
wake(q.wake)
return 1
"""#)

    public let jobID: JobID
    public let workerID: String
    public let attempt: Int
    public let delayMs: Int64
    public let errorJSON: String
    /// A handler that backs off for ever still ends: past this many, the
    /// back-off is an ordinary failure (it uses an attempt).
    public static let maxDeferrals = 100
    let schema: KeySchema

    public enum Outcome: Equatable, Sendable { case deferred, stale, tooMany }

    public init(schema: KeySchema, jobID: JobID, workerID: String, attempt: Int, delayMs: Int64, errorJSON: String) {
        self.schema = schema
        self.jobID = jobID
        self.workerID = workerID
        self.attempt = attempt
        self.delayMs = delayMs
        self.errorJSON = errorJSON
    }

    public var script: LuaScript { DeferCall.script }
    public var keys: [String] { schema.queueKeys(jobID.queue).keys }
    public var args: [String] {
        schema.queueKeys(jobID.queue).args
            + [workerID, jobID.text, String(attempt), String(delayMs),
               FieldCipher.stored(errorJSON, job: jobID.text, field: JobField.error), String(DeferCall.maxDeferrals)]
    }

    public func parse(_ reply: RedisReply) throws -> Outcome {
        switch reply.int {
        case 1: return .deferred
        case 0: return .stale
        case 2: return .tooMany
        default: throw unexpected(reply)
        }
    }
}
