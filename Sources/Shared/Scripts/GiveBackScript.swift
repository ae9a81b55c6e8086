/// At shutdown, returns jobs a worker could not finish in its grace period to
/// the head of their pending lists, without counting the interrupted attempt.
public struct GiveBackCall: ScriptCall {
    public static let script = LuaScript(name: "give_back", uses: [CommonLua.queueKeys, giveBack], body: #"""
-- KEYS[1..10], ARGV[1..5] the queue's keys (QueueKeys)
-- ARGV[6]    worker id
-- ARGV[7..]  job id, attempt, job id, attempt, ...
-- Output:    the ids given back (the others had already left this worker)
local q = queue_keys()
local out = {}
for i = 7, #ARGV, 2 do
  if give_back(q, ARGV[i], ARGV[6], ARGV[i + 1]) then table.insert(out, ARGV[i]) end
end
return out
"""#)

    /// Also used by SettleCall, for the jobs a lost call claimed.
    static let giveBack = LuaPiece("give_back", uses: [CommonLua.lease, CommonLua.priority, CommonLua.wake, EventLogLua.log], #"""
-- Returns a job this worker holds (this attempt) to the head of its pending
-- list without counting the attempt; false when it is no longer the worker's.
local function give_back(q, id, worker, attempt)
  if not holds_lease(q, id, worker, attempt) then return false end
  log_state(q, id, 'queued', uncount_claim(q, id))
  redis.call('LPUSH', q.pending[priority_rank(redis.call('HGET', q.job_prefix .. id, 'priority'))], id)
  wake(q.wake)
  return true
end
"""#)

    public var queue: String { queueKeys.queue }
    public let workerID: String
    public let jobs: [(JobID, Int)]
    let queueKeys: QueueKeys

    public init(schema: KeySchema, queue: String, workerID: String, jobs: [(JobID, Int)]) {
        queueKeys = schema.queueKeys(queue)
        self.workerID = workerID
        self.jobs = jobs
    }

    public var script: LuaScript { GiveBackCall.script }
    public var keys: [String] { queueKeys.keys }
    public var args: [String] { queueKeys.args + [workerID] + jobs.flatMap { [$0.0.text, String($0.1)] } }

    public func parse(_ reply: RedisReply) throws -> [String] {
        guard let items = reply.array else { throw unexpected(reply) }
        return items.compactMap { $0.string }
    }
}
