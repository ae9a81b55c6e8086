/// Reads one queue's counts in one atomic step (so the numbers agree).
public struct QueueStatsCall: ScriptCall {
    public static let script = LuaPrelude.script("queue_stats", #"""
-- KEYS[1..4] pending lists (urgent, high, normal, low)
-- KEYS[5]    scheduled zset
-- KEYS[6]    lease zset
-- KEYS[7]    dead zset
-- KEYS[8]    stats hash
-- KEYS[9]    paused flag
-- Output:    {urgent, high, normal, low, scheduled, running, dead, processed, failed, paused (0/1), missing}
local out = {}
for p = 1, 4 do out[p] = redis.call('LLEN', KEYS[p]) end
out[5] = redis.call('ZCARD', KEYS[5])
out[6] = redis.call('ZCARD', KEYS[6])
out[7] = redis.call('ZCARD', KEYS[7])
local s = redis.call('HMGET', KEYS[8], 'processed', 'failed', 'missing')
out[8] = tonumber(s[1]) or 0
out[9] = tonumber(s[2]) or 0
out[10] = redis.call('EXISTS', KEYS[9])
out[11] = tonumber(s[3]) or 0
return out
"""#)

    public struct Stats: Equatable, Sendable {
        public var name: String
        public var pending: [Priority: Int64]
        public var scheduled: Int64
        public var running: Int64
        public var dead: Int64
        public var processed: Int64
        public var failed: Int64
        public var paused: Bool
        /// Ids found in the queue without their job hash (evicted or deleted), dropped.
        public var missing: Int64 = 0
        public var pendingTotal: Int64 { pending.values.reduce(0, +) }

        /// The queue as the API lists it; `extra` may add fields at the end.
        public func writeJSON(to w: inout JSONWriter, extra: (inout JSONWriter) -> Void = { _ in }) {
            w.beginObject()
            w.field("name", name)
            w.key("pending")
            w.beginObject()
            for p in Priority.allCases { w.field(p.rawValue, pending[p] ?? 0) }
            w.endObject()
            w.field("pending_total", pendingTotal)
            w.field("scheduled", scheduled)
            w.field("running", running)
            w.field("dead", dead)
            w.field("processed_total", processed)
            w.field("failed_total", failed)
            w.field("paused", paused)
            w.field("missing_total", missing)
            extra(&w)
            w.endObject()
        }
    }

    public let queue: String
    let schema: KeySchema

    public init(schema: KeySchema, queue: String) {
        self.schema = schema
        self.queue = queue
    }

    public var script: LuaScript { QueueStatsCall.script }
    public var keys: [String] {
        schema.pendingLists(queue)
            + [schema.scheduled(queue), schema.lease(queue), schema.dead(queue), schema.stats(queue), schema.paused(queue)]
    }
    public var args: [String] { [] }

    public func parse(_ reply: RedisReply) throws -> Stats {
        guard let v = reply.array?.compactMap({ $0.int }), v.count == 11 else { throw unexpected(reply) }
        var pending: [Priority: Int64] = [:]
        for (i, p) in Priority.allCases.enumerated() { pending[p] = v[i] }
        return Stats(name: queue, pending: pending, scheduled: v[4], running: v[5], dead: v[6],
                     processed: v[7], failed: v[8], paused: v[9] == 1, missing: v[10])
    }
}
