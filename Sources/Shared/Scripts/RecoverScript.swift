/// Gives back jobs whose lease ran out (their worker crashed or froze): back to
/// the head of their pending list, or to the dead set when out of attempts.
/// Idempotent: any number of workers may run it at once.
public struct RecoverCall: ScriptCall {
    public static let script = LuaScript(name: "recover", uses: [CommonLua.clock, CommonLua.queueKeys, CommonLua.lease,
                                                                 CommonLua.priority, CommonLua.wake, EventLogLua.log, FailCall.bury],
                                         body: #"""
-- KEYS[1..10], ARGV[1..5] the queue's keys (QueueKeys)
-- ARGV[6]    most jobs to recover in this call
-- ARGV[7]    dead TTL seconds
-- ARGV[8]    dead set cap
-- Output:    flat list: id, outcome ('requeued' | 'dead'), attempt, worker, ...
local now = now_ms()
local q = queue_keys()
local dead_ttl, dead_max = tonumber(ARGV[7]), tonumber(ARGV[8])
local out = {}
-- Dead ids whose hashes expired leave the dead set here too, not only when
-- another job dies, so counts and bulk retries never see them.
redis.call('ZREMRANGEBYSCORE', q.dead, '-inf', now - dead_ttl * 1000)
for _, id in ipairs(redis.call('ZRANGEBYSCORE', q.lease, '-inf', now, 'LIMIT', 0, tonumber(ARGV[6]))) do
  redis.call('ZREM', q.lease, id)
  local key = q.job_prefix .. id
  local f = redis.call('HMGET', key, 'state', 'attempts', 'max_attempts', 'priority', 'worker')
  if f[1] == 'running' then
    local attempts = tonumber(f[2]) or 1
    local message = 'lease expired: worker ' .. (f[5] or '?') .. ' stopped heartbeating (crashed, killed or frozen)'
    local error_json = cjson.encode({message = message, attempt = attempts})
    redis.call('HSET', key, 'error', error_json)
    redis.call('HINCRBY', q.stats, 'recovered', 1)
    if attempts >= (tonumber(f[3]) or DEFAULT_MAX_ATTEMPTS) then
      bury(q, id, now, dead_ttl, dead_max)
      table.insert(out, id); table.insert(out, 'dead')
    else
      queue_again(key)
      log_state(q, id, 'queued', attempts, {'e', error_json})
      redis.call('LPUSH', q.pending[priority_rank(f[4])], id)
      wake(q.wake)
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
    public var keys: [String] { schema.queueKeys(queue).keys }
    public var args: [String] { schema.queueKeys(queue).args + [String(limit), String(deadTTLSeconds), String(deadMax)] }

    public func parse(_ reply: RedisReply) throws -> [Recovered] {
        guard let items = reply.array, items.count % 4 == 0 else { throw unexpected(reply) }
        return stride(from: 0, to: items.count, by: 4).map { i in
            Recovered(id: items[i].string ?? "", dead: items[i + 1].string == "dead",
                      attempt: Int(items[i + 2].int ?? 0), worker: items[i + 3].string ?? "")
        }
    }
}
