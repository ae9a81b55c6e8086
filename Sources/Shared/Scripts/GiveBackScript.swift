/// At shutdown, returns jobs a worker could not finish in its grace period to
/// the head of their pending lists, without counting the interrupted attempt.
public struct GiveBackCall: ScriptCall {
    public static let script = LuaPrelude.script("give_back", #"""
-- KEYS[1..4] pending lists (urgent, high, normal, low)
-- KEYS[5]    lease zset
-- KEYS[6]    wake list
-- ARGV[1]    job key prefix
-- ARGV[2]    worker id
-- ARGV[3..]  job id, attempt, job id, attempt, ...
-- Output:    the ids given back (the others had already left this worker)
local q = {job_prefix = ARGV[1], lease = KEYS[5], wake = KEYS[6], pending = {KEYS[1], KEYS[2], KEYS[3], KEYS[4]}}
local out = {}
for i = 3, #ARGV, 2 do
  if give_back(q, ARGV[i], ARGV[2], ARGV[i + 1]) then table.insert(out, ARGV[i]) end
end
return out
"""#)

    public let queue: String
    public let workerID: String
    public let jobs: [(JobID, Int)]
    let schema: KeySchema

    public init(schema: KeySchema, queue: String, workerID: String, jobs: [(JobID, Int)]) {
        self.schema = schema
        self.queue = queue
        self.workerID = workerID
        self.jobs = jobs
    }

    public var script: LuaScript { GiveBackCall.script }
    public var keys: [String] { schema.pendingLists(queue) + [schema.lease(queue), schema.wake(queue)] }
    public var args: [String] { [schema.jobPrefix(queue), workerID] + jobs.flatMap { [$0.0.text, String($0.1)] } }

    public func parse(_ reply: RedisReply) throws -> [String] {
        guard let items = reply.array else { throw unexpected(reply) }
        return items.compactMap { $0.string }
    }
}
