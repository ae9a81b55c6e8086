/// The heartbeat's lease extension: pushes forward the deadlines of every job a
/// worker runs in one queue, and reports the ones it no longer holds.
public struct ExtendLeasesCall: ScriptCall {
    public static let script = LuaPrelude.script("extend_leases", #"""
-- KEYS[1]  lease zset
-- ARGV[1]  job key prefix
-- ARGV[2]  lease length ms
-- ARGV[3]  worker id
-- ARGV[4..] job id, attempt, job id, attempt, ...
-- Output:  flat list of id, state for the jobs this worker no longer holds
--          (state 'cancelled', or whatever it is now: recovered, gone): the
--          worker should stop running them
local now = now_ms()
local lost = {}
for i = 4, #ARGV, 2 do
  local id = ARGV[i]
  if holds_lease(KEYS[1], ARGV[1] .. id, id, ARGV[3], ARGV[i + 1]) then
    redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), id)
  else
    table.insert(lost, id)
    table.insert(lost, redis.call('HGET', ARGV[1] .. id, 'state') or 'gone')
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
    public var keys: [String] { [schema.lease(queue)] }
    public var args: [String] {
        [schema.jobPrefix(queue), String(leaseMs), workerID] + jobs.flatMap { [$0.0.text, String($0.1)] }
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
