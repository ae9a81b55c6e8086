/// Jobs processed and failed in each of the last 60 minutes of a queue.
public struct ThroughputCall: ScriptCall {
    public static let script = LuaScript(name: "throughput", uses: [CommonLua.clock, CommonLua.queueKeys], body: #"""
-- KEYS[1..10], ARGV[1..5] the queue's keys (QueueKeys)
-- Output:  {first minute (epoch ms / 60000), processed, failed, processed, failed, ...}, oldest first
local q = queue_keys()
local minute = math.floor(now_ms() / 60000)
local out = {minute - 59}
for m = minute - 59, minute do
  local f = redis.call('HMGET', q.throughput_prefix .. m, 'processed', 'failed')
  table.insert(out, tonumber(f[1]) or 0)
  table.insert(out, tonumber(f[2]) or 0)
end
return out
"""#)

    public struct Minute: Equatable {
        public let startMillis: Int64
        public let processed: Int64
        public let failed: Int64
    }

    public let queue: String
    let schema: KeySchema

    public init(schema: KeySchema, queue: String) {
        self.schema = schema
        self.queue = queue
    }

    public var script: LuaScript { ThroughputCall.script }
    public var keys: [String] { schema.queueKeys(queue).keys }
    public var args: [String] { schema.queueKeys(queue).args }

    public func parse(_ reply: RedisReply) throws -> [Minute] {
        guard let v = reply.array?.compactMap(\.int), v.count == 121 else { throw unexpected(reply) }
        return (0..<60).map { i in
            Minute(startMillis: (v[0] + Int64(i)) * 60_000, processed: v[1 + 2 * i], failed: v[2 + 2 * i])
        }
    }
}
