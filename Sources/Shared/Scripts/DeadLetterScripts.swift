/// Lists a queue's dead jobs, newest first, a page at a time.
///
/// The cursor is `<score>.<skip>`: the death time (ms) to continue from and
/// how many jobs at exactly that time were already returned, so pages neither
/// repeat nor skip jobs when new ones die meanwhile.
public struct DeadListCall: ScriptCall {
    public static let script = LuaScript(name: "dead_list", uses: [CommonLua.queueKeys], body: #"""
-- KEYS[1..10], ARGV[1..5] the queue's keys (QueueKeys)
-- ARGV[6]  highest score to return ('+inf' for the first page)
-- ARGV[7]  how many jobs at exactly that score to skip
-- ARGV[8]  page size
-- Output:  {1 when more jobs follow this page else 0, then id, score, HGETALL of the job, ...}
-- One id past the page is read to tell whether another page follows, so the
-- last page says so even when it is exactly full.
local q = queue_keys()
local limit = tonumber(ARGV[8])
local page = redis.call('ZREVRANGEBYSCORE', q.dead, ARGV[6], '-inf', 'WITHSCORES', 'LIMIT', tonumber(ARGV[7]), limit + 1)
local more = #page > 2 * limit
local out = {more and 1 or 0}
for i = 1, math.min(#page, 2 * limit), 2 do
  table.insert(out, page[i])
  table.insert(out, page[i + 1])
  table.insert(out, redis.call('HGETALL', q.job_prefix .. page[i]))
end
return out
"""#)

    public struct Cursor: Equatable, Sendable {
        public var score: Int64?
        public var skip: Int

        public static let start = Cursor(score: nil, skip: 0)

        public init(score: Int64?, skip: Int) {
            self.score = score
            self.skip = skip
        }

        public init?(parsing text: String) {
            let parts = text.split(separator: ".", omittingEmptySubsequences: false)
            guard parts.count == 2, let s = Int64(parts[0]), let k = Int(parts[1]), s >= 0, k >= 0, k <= 1_000_000 else { return nil }
            self.init(score: s, skip: k)
        }

        public var text: String { "\(score ?? 0).\(skip)" }
    }

    public struct Page {
        public var jobs: [Job]
        /// Where the next page starts; nil when this was the last.
        public var next: Cursor?
    }

    public let queue: String
    public let cursor: Cursor
    public let limit: Int
    let schema: KeySchema

    public init(schema: KeySchema, queue: String, cursor: Cursor, limit: Int) {
        self.schema = schema
        self.queue = queue
        self.cursor = cursor
        self.limit = limit
    }

    public var script: LuaScript { DeadListCall.script }
    public var keys: [String] { schema.queueKeys(queue).keys }
    public var args: [String] {
        schema.queueKeys(queue).args + [cursor.score.map(String.init) ?? "+inf", String(cursor.skip), String(limit)]
    }

    public func parse(_ reply: RedisReply) throws -> Page {
        guard let all = reply.array, let more = all.first?.int, all.count % 3 == 1 else { throw unexpected(reply) }
        let items = Array(all.dropFirst())
        var jobs: [Job] = []
        var lastScore = cursor.score
        var skip = cursor.skip
        for i in stride(from: 0, to: items.count, by: 3) {
            guard let idText = items[i].string, let id = JobID(parsing: idText), let score = items[i + 1].int else {
                throw unexpected(reply)
            }
            if score == lastScore { skip += 1 } else { lastScore = score; skip = 1 }
            let hash = items[i + 2].hash
            // A dead job whose hash expired or was dropped is skipped, not shown half-empty.
            if !hash.isEmpty, let job = try? Job(id: id, hash: hash) { jobs.append(job) }
        }
        return Page(jobs: jobs, next: more == 1 ? Cursor(score: lastScore, skip: skip) : nil)
    }
}

/// Puts dead jobs back to queued with their attempts reset: the given ids, or
/// (with no ids) up to `limit` of the oldest.
public struct RetryDeadCall: ScriptCall {
    public static let script = LuaScript(name: "retry_dead", uses: [CommonLua.queueKeys, CommonLua.priority, CommonLua.wake,
                                                                     CommonLua.finishing, EventLogLua.lifecycle, GroupLua.turns],
                                         body: #"""
-- KEYS[1..10], ARGV[1..5] the queue's keys (QueueKeys)
-- ARGV[6]    most jobs to retry when no ids are given
-- ARGV[7]    the retrying client's max_pending (0 = none): a job of that
--            client is not retried past it (state 'client_full')
-- ARGV[8..]  job ids (none: the oldest dead jobs)
-- Output:    {retried count, state of the first id when it was not dead or '', ids examined}
local q = queue_keys()
local client_limit = tonumber(ARGV[7])
local ids = {}
for i = 8, #ARGV do table.insert(ids, ARGV[i]) end
if #ids == 0 then ids = redis.call('ZRANGE', q.dead, 0, tonumber(ARGV[6]) - 1) end
local retried, refused = 0, ''
for _, id in ipairs(ids) do
  local key = q.job_prefix .. id
  local f = redis.call('HMGET', key, 'state', 'priority', 'idem', 'client', 'group')
  local full = client_limit > 0 and f[4]
               and (tonumber(redis.call('HGET', q.stats, 'client:' .. f[4])) or 0) >= client_limit
  if f[1] == 'dead' and full then
    if refused == '' then refused = 'client_full' end
  elseif f[1] == 'dead' then
    count_client_jobs(q, f[4], 1)
    redis.call('ZREM', q.dead, id)
    redis.call('HSET', key, 'state', 'queued', 'attempts', 0)
    redis.call('HDEL', key, 'finished_at', 'started_at', 'worker', 'result', 'progress')
    redis.call('PERSIST', key)
    if f[3] then redis.call('PERSIST', q.idem_prefix .. f[3]) end
    keep_log(q, id)
    log_state(q, id, 'queued', '0')
    push_queued(q, id, priority_rank(f[2]), f[5])
    wake(q.wake)
    retried = retried + 1
  else
    redis.call('ZREM', q.dead, id)
    if refused == '' then refused = f[1] or 'missing' end
  end
end
return {retried, refused, #ids}
"""#)

    public struct Outcome: Equatable {
        public let retried: Int
        /// When a given id was not dead: its state ('missing' when gone).
        public let refusedState: String?
        /// Ids looked at (retried or dropped as not dead): a bulk retry is done
        /// when a call examines fewer than its limit.
        public var examined: Int = 0

        public init(retried: Int, refusedState: String?, examined: Int = 0) {
            self.retried = retried
            self.refusedState = refusedState
            self.examined = examined
        }
    }

    public let queue: String
    public let ids: [JobID]
    public let limit: Int
    let schema: KeySchema

    /// The max_pending of the client retrying its own job (0: none; an
    /// admin's bulk retry is not held back by its clients' limits).
    public var clientLimit: Int64 = 0

    public init(schema: KeySchema, queue: String, ids: [JobID] = [], limit: Int = 1000) {
        self.schema = schema
        self.queue = queue
        self.ids = ids
        self.limit = limit
    }

    public var script: LuaScript { RetryDeadCall.script }
    public var keys: [String] { schema.queueKeys(queue).keys }
    public var args: [String] { schema.queueKeys(queue).args + [String(limit), String(clientLimit)] + ids.map(\.text) }

    public func parse(_ reply: RedisReply) throws -> Outcome {
        guard let parts = reply.array, parts.count == 3, let n = parts[0].int, let examined = parts[2].int else {
            throw unexpected(reply)
        }
        let refused = parts[1].string ?? ""
        return Outcome(retried: Int(n), refusedState: refused.isEmpty ? nil : refused, examined: Int(examined))
    }
}

/// Deletes up to `limit` of a queue's dead jobs (hashes and idempotency keys).
public struct PurgeDeadCall: ScriptCall {
    public static let script = LuaScript(name: "purge_dead", uses: [CommonLua.queueKeys, EventLogLua.lifecycle], body: #"""
-- KEYS[1..10], ARGV[1..5] the queue's keys (QueueKeys)
-- ARGV[6]  most jobs to delete in this call
-- Output:  how many were deleted
local q = queue_keys()
local ids = redis.call('ZRANGE', q.dead, 0, tonumber(ARGV[6]) - 1)
for _, id in ipairs(ids) do
  local key = q.job_prefix .. id
  local idem = redis.call('HGET', key, 'idem')
  if idem then redis.call('DEL', q.idem_prefix .. idem) end
  redis.call('DEL', key)
  delete_log(q, id)
  redis.call('ZREM', q.dead, id)
end
return #ids
"""#)

    public let queue: String
    public let limit: Int
    let schema: KeySchema

    public init(schema: KeySchema, queue: String, limit: Int = 1000) {
        self.schema = schema
        self.queue = queue
        self.limit = limit
    }

    public var script: LuaScript { PurgeDeadCall.script }
    public var keys: [String] { schema.queueKeys(queue).keys }
    public var args: [String] { schema.queueKeys(queue).args + [String(limit)] }

    public func parse(_ reply: RedisReply) throws -> Int {
        guard let n = reply.int else { throw unexpected(reply) }
        return Int(n)
    }
}
