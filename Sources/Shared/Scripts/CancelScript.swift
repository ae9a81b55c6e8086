/// Cancels a job that has not finished: a queued or scheduled job never runs;
/// a running job loses its lease, so its worker stops it at the next heartbeat
/// and any result it still reports is dropped.
public struct CancelCall: ScriptCall {
    public static let script = LuaPrelude.script("cancel", #"""
-- KEYS[1]    job hash
-- KEYS[2..5] pending lists (urgent, high, normal, low)
-- KEYS[6]    scheduled zset
-- KEYS[7]    lease zset
-- ARGV[1]    job id
-- ARGV[2]    idempotency key prefix
-- ARGV[3]    waiting key prefix
-- ARGV[4]    finished channel
-- Output:    {'cancelled', state before} | {'conflict', state} (already finished) | {'missing'}
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return {'missing'} end
if state == 'succeeded' or state == 'dead' or state == 'cancelled' then return {'conflict', state} end
if state == 'queued' then
  -- O(position in the list); cancelling is rare, and leaving the id behind
  -- would keep it counted as pending (and scaling workers) until popped.
  redis.call('LREM', KEYS[1 + priority_rank(redis.call('HGET', KEYS[1], 'priority'))], 1, ARGV[1])
elseif state == 'scheduled' then
  redis.call('ZREM', KEYS[6], ARGV[1])
elseif state == 'running' then
  redis.call('ZREM', KEYS[7], ARGV[1])
end
local _, _, now_us_text = clock()
redis.call('HSET', KEYS[1], 'state', 'cancelled', 'finished_at', now_us_text)
expire_job(KEYS[1], ARGV[2], tonumber(redis.call('HGET', KEYS[1], 'result_ttl_s')) or DEFAULT_RESULT_TTL)
notify_finished(ARGV[3], ARGV[4], ARGV[1])
return {'cancelled', state}
"""#)

    public enum Outcome: Equatable {
        case cancelled(previous: String)
        /// Already finished (succeeded, dead or cancelled): nothing changed.
        case conflict(state: String)
        case missing
    }

    public let jobID: JobID
    let schema: KeySchema

    public init(schema: KeySchema, jobID: JobID) {
        self.schema = schema
        self.jobID = jobID
    }

    public var script: LuaScript { CancelCall.script }
    public var keys: [String] {
        let q = jobID.queue
        return [schema.job(jobID)] + schema.pendingLists(q) + [schema.scheduled(q), schema.lease(q)]
    }
    public var args: [String] {
        [jobID.text, schema.idempotencyPrefix(jobID.queue), schema.waitingPrefix(jobID.queue), schema.finishedChannel]
    }

    public func parse(_ reply: RedisReply) throws -> Outcome {
        guard let parts = reply.array, let kind = parts.first?.string else { throw unexpected(reply) }
        switch (kind, parts.count > 1 ? parts[1].string : nil) {
        case ("cancelled", let s?): return .cancelled(previous: s)
        case ("conflict", let s?): return .conflict(state: s)
        case ("missing", _): return .missing
        default: throw unexpected(reply)
        }
    }
}
