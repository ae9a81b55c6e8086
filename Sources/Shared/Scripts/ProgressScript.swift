/// Stores a running job's latest progress, if the worker still holds it.
public struct ProgressCall: ScriptCall {
    public static let script = LuaPrelude.script("progress", #"""
-- KEYS[1]  job hash
-- KEYS[2]  lease zset
-- ARGV[1]  job id
-- ARGV[2]  worker id
-- ARGV[3]  attempt
-- ARGV[4]  progress (JSON text)
-- Output:  1 stored, 0 not (the lease was lost)
if not holds_lease(KEYS[2], KEYS[1], ARGV[1], ARGV[2], ARGV[3]) then return 0 end
redis.call('HSET', KEYS[1], 'progress', ARGV[4])
return 1
"""#)

    public let jobID: JobID
    public let workerID: String
    public let attempt: Int
    public let progressJSON: String
    let schema: KeySchema

    public init(schema: KeySchema, jobID: JobID, workerID: String, attempt: Int, progressJSON: String) {
        self.schema = schema
        self.jobID = jobID
        self.workerID = workerID
        self.attempt = attempt
        self.progressJSON = progressJSON
    }

    public var script: LuaScript { ProgressCall.script }
    public var keys: [String] { [schema.job(jobID), schema.lease(jobID.queue)] }
    public var args: [String] { [jobID.text, workerID, String(attempt), progressJSON] }

    public func parse(_ reply: RedisReply) throws -> Bool {
        guard let n = reply.int else { throw unexpected(reply) }
        return n == 1
    }
}
