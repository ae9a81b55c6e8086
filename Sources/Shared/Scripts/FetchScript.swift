/// Takes the next job of a queue for a worker, in one round trip: promotes due
/// scheduled jobs, pops by priority, leases the job and returns its fields.
public struct FetchCall: ScriptCall {
    public static let script = LuaPrelude.script("fetch", #"""
-- KEYS[1..4] pending lists (urgent, high, normal, low)
-- KEYS[5]    scheduled zset
-- KEYS[6]    lease zset
-- KEYS[7]    paused flag
-- KEYS[8]    wake list
-- ARGV[1]    job key prefix
-- ARGV[2]    lease length ms
-- ARGV[3]    worker id
-- ARGV[4]    most scheduled jobs to promote in this call
-- Output:    {'job', id, now, HGETALL of the job}   a job, now running under this worker's lease
--            {'empty', next due ms or -1, now}      nothing to run
--            {'paused', -1, now}                    the queue is paused
local now, now_us = clock()
local job_prefix = ARGV[1]

local due = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now, 'LIMIT', 0, tonumber(ARGV[4]))
for _, id in ipairs(due) do
  redis.call('ZREM', KEYS[5], id)
  local key = job_prefix .. id
  local f = redis.call('HMGET', key, 'state', 'priority')
  if f[1] == 'scheduled' then
    local prio = ({urgent = 1, high = 2, normal = 3, low = 4})[f[2]] or 3
    redis.call('HSET', key, 'state', 'queued')
    redis.call('RPUSH', KEYS[prio], id)
  end
end
if #due > 0 then wake(KEYS[8]) end

if redis.call('EXISTS', KEYS[7]) == 1 then return {'paused', -1, now} end

-- Ids whose job was cancelled or has expired are dropped as they come up;
-- the bound keeps one call short even after a mass cancel.
local skipped = 0
for p = 1, 4 do
  while skipped < 1000 do
    local id = redis.call('LPOP', KEYS[p])
    if not id then break end
    local key = job_prefix .. id
    local state = redis.call('HGET', key, 'state')
    -- A hash without a state is damaged: hand it out so the worker fails it
    -- with a clear error instead of dropping it silently.
    if state == 'queued' or (not state and redis.call('EXISTS', key) == 1) then
      redis.call('HINCRBY', key, 'attempts', 1)
      redis.call('HSET', key, 'state', 'running', 'started_at', now_us, 'worker', ARGV[3])
      redis.call('ZADD', KEYS[6], now + tonumber(ARGV[2]), id)
      return {'job', id, now, redis.call('HGETALL', key)}
    end
    skipped = skipped + 1
  end
end

local next_due = redis.call('ZRANGE', KEYS[5], 0, 0, 'WITHSCORES')
return {'empty', next_due[2] or -1, now}
"""#)

    public enum Outcome {
        /// A job now leased to this worker, and Redis' clock when it was taken.
        case job(Job, now: Int64)
        /// A job whose hash could not be read (damaged in Redis): it is leased,
        /// so the worker must fail it with `error`.
        case damaged(JobID, attempt: Int, error: String)
        /// Nothing to run; `nextDueInMs` is when the next scheduled job is due (nil: none).
        case empty(nextDueInMs: Int64?)
        case paused
    }

    public let queue: String
    public let workerID: String
    public let leaseMs: Int64
    public let promoteLimit: Int
    let schema: KeySchema

    public init(schema: KeySchema, queue: String, workerID: String, leaseMs: Int64, promoteLimit: Int = 100) {
        self.schema = schema
        self.queue = queue
        self.workerID = workerID
        self.leaseMs = leaseMs
        self.promoteLimit = promoteLimit
    }

    public var script: LuaScript { FetchCall.script }
    public var keys: [String] {
        schema.pendingLists(queue) + [schema.scheduled(queue), schema.lease(queue), schema.paused(queue), schema.wake(queue)]
    }
    public var args: [String] { [schema.jobPrefix(queue), String(leaseMs), workerID, String(promoteLimit)] }

    public func parse(_ reply: RedisReply) throws -> Outcome {
        guard let parts = reply.array, parts.count >= 3, let kind = parts[0].string else { throw unexpected(reply) }
        switch kind {
        case "job":
            guard parts.count == 4, let idText = parts[1].string, let now = parts[2].int,
                  let id = JobID(parsing: idText) else { throw unexpected(reply) }
            let hash = parts[3].hash
            do {
                return .job(try Job(id: id, hash: hash), now: now)
            } catch {
                let attempt = Int(hash[JobField.attempts] ?? "") ?? 1
                return .damaged(id, attempt: attempt, error: "\(error)")
            }
        case "empty":
            guard let due = parts[1].int, let now = parts[2].int else { throw unexpected(reply) }
            return .empty(nextDueInMs: due < 0 ? nil : max(0, due - now))
        case "paused":
            return .paused
        default:
            throw unexpected(reply)
        }
    }
}
