/// Cancels a job that has not finished: a queued or scheduled job never runs;
/// a running job loses its lease, so its worker stops it at the next heartbeat
/// and any result it still reports is dropped.
public struct CancelCall: ScriptCall {
    public static let script = LuaScript(name: "cancel", uses: [CommonLua.clock, CommonLua.defaults, CommonLua.queueKeys,
                                                                CommonLua.priority, CommonLua.finishing, EventLogLua.log,
                                                                ParkLua.keys, GroupLua.turns],
                                         body: #"""
-- KEYS[1..10], ARGV[1..5] the queue's keys (QueueKeys)
-- KEYS[11]   job hash
-- ARGV[6]    job id
-- Output:    {'cancelled', state before} | {'conflict', state} (already finished) | {'missing'}
local q = queue_keys()
local key, id = KEYS[11], ARGV[6]
local f = redis.call('HMGET', key, 'state', 'priority', 'result_ttl_s', 'client', 'attempts', 'parked', 'group')
local state = f[1]
if not state then return {'missing'} end
if state == 'succeeded' or state == 'dead' or state == 'cancelled' then return {'conflict', state} end
if state == 'queued' then
  -- O(position in the list); cancelling is rare, and leaving the id behind
  -- would keep it counted as pending (and scaling workers) until popped.
  -- In its group's line, parked behind its limit, or in the pending list.
  local rank = priority_rank(f[2])
  if not (f[7] and group_remove(q, f[7], rank, id)) then
    redis.call('LREM', f[6] and parked_list(q, f[6]) or q.pending[rank], 1, id)
  end
elseif state == 'scheduled' then
  redis.call('ZREM', q.scheduled, id)
elseif state == 'running' then
  redis.call('ZREM', q.lease, id)
end
local _, _, now_us_text = clock()
redis.call('HSET', key, 'state', 'cancelled', 'finished_at', now_us_text)
expire_job(q, key, tonumber(f[3]) or DEFAULT_RESULT_TTL)
log_state(q, id, 'cancelled', f[5] or '0', nil, tonumber(f[3]) or DEFAULT_RESULT_TTL)
count_client_jobs(q, f[4], -1)
notify_finished(q, id)
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
    public var keys: [String] { schema.queueKeys(jobID.queue).keys + [schema.job(jobID)] }
    public var args: [String] { schema.queueKeys(jobID.queue).args + [jobID.text] }

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
