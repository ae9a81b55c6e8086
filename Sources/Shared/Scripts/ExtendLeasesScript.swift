/// The heartbeat's lease extension: pushes forward the deadlines of every job a
/// worker runs in one queue, and reports the ones it no longer holds.
public struct ExtendLeasesCall: ScriptCall {
    public static let script = LuaScript(name: "extend_leases", uses: [CommonLua.clock, CommonLua.queueKeys, CommonLua.lease],
                                         body: #"""
-- KEYS[1..10], ARGV[1..5] the queue's keys (QueueKeys)
-- ARGV[6]   lease length ms
-- ARGV[7]   worker id
-- ARGV[8..] job id, attempt, job id, attempt, ...
-- Output:  flat list of id, state for the jobs this worker no longer holds
--          (state 'cancelled', or whatever it is now: recovered, gone): the
--          worker should stop running them
local now = now_ms()
local q = queue_keys()
local deadline = now + tonumber(ARGV[6])
local lost = {}
for i = 8, #ARGV, 2 do
  local id = ARGV[i]
  if holds_lease(q, id, ARGV[7], ARGV[i + 1]) then
    redis.call('ZADD', q.lease, 'XX', deadline, id)
  else
    table.insert(lost, id)
    table.insert(lost, redis.call('HGET', q.job_prefix .. id, 'state') or 'gone')
  end
end
return lost
"""#)

    public let queue: String
    public let workerID: String
    public let leaseMs: Int64
    /// (job id, attempt) of every job this worker runs in `queue`.
    public let jobs: [(JobID, Int)]
    let schema: KeySchema

    public init(schema: KeySchema, queue: String, workerID: String, leaseMs: Int64, jobs: [(JobID, Int)]) {
        self.schema = schema
        self.queue = queue
        self.workerID = workerID
        self.leaseMs = leaseMs
        self.jobs = jobs
    }

    public var script: LuaScript { ExtendLeasesCall.script }
    public var keys: [String] { schema.queueKeys(queue).keys }
    public var args: [String] {
        schema.queueKeys(queue).args + [String(leaseMs), workerID] + jobs.flatMap { [$0.0.text, String($0.1)] }
    }

    /// A job this worker no longer holds, and whether that is because it was cancelled.
    public struct Lost: Equatable {
        public let id: String
        /// The job's state now ('gone' when its hash is gone).
        public let state: String
        public var cancelled: Bool { state == "cancelled" }
    }

    public func parse(_ reply: RedisReply) throws -> [Lost] {
        guard let items = reply.array, items.count % 2 == 0 else { throw unexpected(reply) }
        return stride(from: 0, to: items.count, by: 2).map {
            Lost(id: items[$0].string ?? "", state: items[$0 + 1].string ?? "gone")
        }
    }
}
