/// Gives back jobs whose lease ran out (their worker crashed or froze): back to
/// the head of their pending list, or to the dead set when out of attempts.
/// Idempotent: any number of workers may run it at once.
public struct RecoverCall: ScriptCall {
    public static let script = LuaPrelude.script("recover", #"""
-- KEYS[1..4] pending lists (urgent, high, normal, low)
-- KEYS[5]    lease zset
-- KEYS[6]    dead zset
-- KEYS[7]    stats hash
-- KEYS[8]    wake list
-- ARGV[1]    job key prefix
-- ARGV[2]    most jobs to recover in this call
-- ARGV[3]    dead TTL seconds
-- ARGV[4]    dead set cap
-- ARGV[5]    idempotency key prefix
-- ARGV[6]    waiting key prefix
-- ARGV[7]    finished channel
-- Output:    flat list: id, outcome ('requeued' | 'dead'), attempt, worker, ...
local now = now_ms()
local job_prefix = ARGV[1]
local out = {}
-- Dead ids whose hashes expired leave the dead set here too, not only when
-- another job dies, so counts and bulk retries never see them.
redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', now - tonumber(ARGV[3]) * 1000)
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))) do
  redis.call('ZREM', KEYS[5], id)
  local key = job_prefix .. id
  local f = redis.call('HMGET', key, 'state', 'attempts', 'max_attempts', 'priority', 'worker')
  if f[1] == 'running' then
    local attempts = tonumber(f[2]) or 1
    local message = 'lease expired: worker ' .. (f[5] or '?') .. ' stopped heartbeating (crashed, killed or frozen)'
    redis.call('HSET', key, 'error', cjson.encode({message = message, attempt = attempts}))
    redis.call('HINCRBY', KEYS[7], 'recovered', 1)
    if attempts >= (tonumber(f[3]) or DEFAULT_MAX_ATTEMPTS) then
      bury(KEYS[6], KEYS[7], key, job_prefix, ARGV[5], id, now, tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[6], ARGV[7])
      table.insert(out, id); table.insert(out, 'dead')
    else
      local prio = priority_rank(f[4])
      queue_again(key)
      redis.call('LPUSH', KEYS[prio], id)
      wake(KEYS[8])
      table.insert(out, id); table.insert(out, 'requeued')
    end
    table.insert(out, attempts); table.insert(out, f[5] or '')
  end
end
return out
"""#)

    public struct Recovered: Equatable {
        public let id: String
        public let dead: Bool
        public let attempt: Int
        public let worker: String
    }

    public let queue: String
    public let limit: Int
    public let deadTTLSeconds: Int64
    public let deadMax: Int
    let schema: KeySchema

    public init(schema: KeySchema, queue: String, limit: Int = 100, deadTTLSeconds: Int64, deadMax: Int) {
        self.schema = schema
        self.queue = queue
        self.limit = limit
        self.deadTTLSeconds = deadTTLSeconds
        self.deadMax = deadMax
    }

    public var script: LuaScript { RecoverCall.script }
    public var keys: [String] {
        schema.pendingLists(queue) + [schema.lease(queue), schema.dead(queue), schema.stats(queue), schema.wake(queue)]
    }
    public var args: [String] {
        [schema.jobPrefix(queue), String(limit), String(deadTTLSeconds), String(deadMax), schema.idempotencyPrefix(queue),
         schema.waitingPrefix(queue), schema.finishedChannel]
    }

    public func parse(_ reply: RedisReply) throws -> [Recovered] {
        guard let items = reply.array, items.count % 4 == 0 else { throw unexpected(reply) }
        return stride(from: 0, to: items.count, by: 4).map { i in
            Recovered(id: items[i].string ?? "", dead: items[i + 1].string == "dead",
                      attempt: Int(items[i + 2].int ?? 0), worker: items[i + 3].string ?? "")
        }
    }
}
