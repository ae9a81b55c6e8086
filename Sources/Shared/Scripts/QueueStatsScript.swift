/// Reads one queue's counts in one atomic step (so the numbers agree).
public struct QueueStatsCall: ScriptCall {
    public static let script = LuaScript(name: "queue_stats", uses: [CommonLua.queueKeys, ParkLua.keys, GroupLua.turns], body: #"""
-- KEYS[1..10], ARGV[1..5] the queue's keys (QueueKeys)
-- Output:    {urgent, high, normal, low, scheduled, running, dead, processed, failed, paused (0/1), missing,
--             parked behind limits}
local q = queue_keys()
local out = {}
local pending = pending_counts(q)
for p = 1, 4 do out[p] = pending[p] end
out[5] = redis.call('ZCARD', q.scheduled)
out[6] = redis.call('ZCARD', q.lease)
out[7] = redis.call('ZCARD', q.dead)
local s = redis.call('HMGET', q.stats, 'processed', 'failed', 'missing')
out[8] = tonumber(s[1]) or 0
out[9] = tonumber(s[2]) or 0
out[10] = redis.call('EXISTS', q.paused)
out[11] = tonumber(s[3]) or 0
out[12] = parked_count(q)
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
        /// Jobs waiting for their limit (parked), not in `pending`.
        public var waitingForLimits: Int64 = 0
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
            w.field("waiting_for_limits", waitingForLimits)
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
    public var keys: [String] { schema.queueKeys(queue).keys }
    public var args: [String] { schema.queueKeys(queue).args }

    public func parse(_ reply: RedisReply) throws -> Stats {
        guard let v = reply.array?.compactMap({ $0.int }), v.count == 12 else { throw unexpected(reply) }
        var pending: [Priority: Int64] = [:]
        for (i, p) in Priority.allCases.enumerated() { pending[p] = v[i] }
        return Stats(name: queue, pending: pending, scheduled: v[4], running: v[5], dead: v[6],
                     processed: v[7], failed: v[8], paused: v[9] == 1, missing: v[10], waitingForLimits: v[11])
    }
}
