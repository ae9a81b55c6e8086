/// Whether an enqueue may use a queue: known already, or new while the
/// registry of known queues holds fewer than `SPOOL_MAX_QUEUES`. Read only:
/// the API adds the name (SADD) once the jobs are stored, so a refused
/// request changes nothing. Two new queues created at the same instant can
/// both pass the check, so the limit may be passed by the number of queues
/// created at once; it bounds growth, it is not a quota.
///
/// One key (the registry set), so one slot on Redis Cluster.
public struct CheckQueueCall: ScriptCall {
    public static let script = LuaScript(name: "check_queue", source: #"""
-- KEYS[1]  queue registry set
-- ARGV[1]  queue name
-- Output:  {1 when known else 0, number of known queues}
return {redis.call('SISMEMBER', KEYS[1], ARGV[1]), redis.call('SCARD', KEYS[1])}
"""#)

    public enum Outcome: Equatable {
        case known
        /// Not known yet; `count` queues are.
        case new(count: Int64)
    }

    public let queue: String
    let schema: KeySchema

    public init(schema: KeySchema, queue: String) {
        self.schema = schema
        self.queue = queue
    }

    public var script: LuaScript { CheckQueueCall.script }
    public var keys: [String] { [schema.queues] }
    public var args: [String] { [queue] }

    public func parse(_ reply: RedisReply) throws -> Outcome {
        guard let v = reply.array?.compactMap(\.int), v.count == 2 else { throw unexpected(reply) }
        return v[0] == 1 ? .known : .new(count: v[1])
    }
}

/// Deletes a queue's keys: at once when it holds no job, else (with `purge`)
/// a batch of its jobs per call until none is left.
///
/// Only the queue's own keys (one hash tag, one slot); the caller removes the
/// name from the registry afterwards. Finished jobs are not in any list or
/// set: their hashes expire with their result TTL as usual.
public struct DeleteQueueCall: ScriptCall {
    public static let script = LuaScript(name: "delete_queue", uses: [CommonLua.queueKeys, CommonLua.finishing, EventLogLua.lifecycle,
                                                                      ParkLua.keys, GroupLua.turns], body: #"""
-- KEYS[1..10], ARGV[1..5] the queue's keys (QueueKeys)
-- ARGV[6]    jobs to delete in this call when purging (0 = do not purge)
-- Output:    {'deleted'} | {'purged', n} (more may be left) | {'not_empty', pending, scheduled, running, dead}
local q = queue_keys()
local pending = 0
for _, count in ipairs(pending_counts(q)) do pending = pending + count end
-- Jobs parked behind limits are pending too.
pending = pending + parked_count(q)
local scheduled, running, dead = redis.call('ZCARD', q.scheduled), redis.call('ZCARD', q.lease), redis.call('ZCARD', q.dead)
if pending + scheduled + running + dead == 0 then
  -- The pending lists may still hold empty group turns (counted as none).
  redis.call('DEL', q.stats, q.paused, q.wake, event_keys(q).queue_events, parked_set(q), groups_hash(q), unpack(q.pending))
  return {'deleted'}
end
local batch = tonumber(ARGV[6])
if batch == 0 then return {'not_empty', pending, scheduled, running, dead} end
-- `unfinished`: the job still counts for its client's max_pending (it is
-- not dead): the count goes down with it, should the purge stop half-way.
local function drop(id, unfinished)
  local key = q.job_prefix .. id
  local f = redis.call('HMGET', key, 'idem', 'client')
  if f[1] then redis.call('DEL', q.idem_prefix .. f[1]) end
  if unfinished then count_client_jobs(q, f[2], -1) end
  redis.call('DEL', key)
  delete_log(q, id)
end
local removed = 0
for k = 1, 4 do
  if removed < batch then
    local ids = redis.call('LPOP', q.pending[k], batch - removed)
    for _, id in ipairs(ids or {}) do
      if is_group_token(id) then
        -- A group's turn: purge from its line (its token goes back while it has more).
        local name = string.sub(id, 2)
        local line = group_line(q, name, k)
        local group_ids = redis.call('LPOP', line, math.max(1, batch - removed)) or {}
        for _, gid in ipairs(group_ids) do drop(gid, true) end
        removed = removed + #group_ids
        if redis.call('EXISTS', line) == 1 then
          redis.call('LPUSH', q.pending[k], id)
          add_group_extra(q, k, -#group_ids)
        else
          -- (A turn whose line was empty already was counted when it emptied.)
          if #group_ids > 0 then group_line_emptied(q, name) end
          add_group_extra(q, k, 1 - #group_ids)
        end
      else
        drop(id, true)
        removed = removed + 1
      end
    end
  end
end
for _, list in ipairs(parked_lists(q)) do
  if removed < batch then
    local ids = redis.call('LPOP', list, batch - removed)
    if ids then for _, id in ipairs(ids) do drop(id, true) end; removed = removed + #ids end
  end
end
for _, set in ipairs({q.scheduled, q.lease, q.dead}) do
  if removed < batch then
    local popped = redis.call('ZPOPMIN', set, batch - removed)
    for i = 1, #popped, 2 do drop(popped[i], set ~= q.dead) end
    removed = removed + #popped / 2
  end
end
return {'purged', removed}
"""#)

    public enum Outcome: Equatable {
        case deleted
        case purged(Int)
        case notEmpty(pending: Int64, scheduled: Int64, running: Int64, dead: Int64)
    }

    public let queue: String
    public let purgeBatch: Int
    let schema: KeySchema

    public init(schema: KeySchema, queue: String, purgeBatch: Int) {
        self.schema = schema
        self.queue = queue
        self.purgeBatch = purgeBatch
    }

    public var script: LuaScript { DeleteQueueCall.script }
    public var keys: [String] { schema.queueKeys(queue).keys }
    public var args: [String] { schema.queueKeys(queue).args + [String(purgeBatch)] }

    public func parse(_ reply: RedisReply) throws -> Outcome {
        guard let parts = reply.array, let tag = parts.first?.string else { throw unexpected(reply) }
        switch (tag, parts.count) {
        case ("deleted", 1): return .deleted
        case ("purged", 2): return .purged(Int(parts[1].int ?? 0))
        case ("not_empty", 5):
            let v = parts.dropFirst().compactMap(\.int)
            guard v.count == 4 else { throw unexpected(reply) }
            return .notEmpty(pending: v[0], scheduled: v[1], running: v[2], dead: v[3])
        default: throw unexpected(reply)
        }
    }
}
