/// Stores a running job's latest progress, if the worker still holds it.
public struct ProgressCall: ScriptCall {
    public static let script = LuaScript(name: "progress", uses: [CommonLua.queueKeys, CommonLua.lease], body: #"""
-- KEYS[1..10], ARGV[1..5] the queue's keys (QueueKeys)
-- KEYS[11]  job hash
-- ARGV[6]   job id
-- ARGV[7]   worker id
-- ARGV[8]   attempt
-- ARGV[9]   progress (JSON text)
-- Output:  1 stored, 0 not (the lease was lost)
if not holds_lease(queue_keys(), ARGV[6], ARGV[7], ARGV[8]) then return 0 end
redis.call('HSET', KEYS[11], 'progress', ARGV[9])
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
    public var keys: [String] { schema.queueKeys(jobID.queue).keys + [schema.job(jobID)] }
    public var args: [String] {
        schema.queueKeys(jobID.queue).args
            + [jobID.text, workerID, String(attempt), FieldCipher.stored(progressJSON, job: jobID.text, field: JobField.progress)]
    }

    public func parse(_ reply: RedisReply) throws -> Bool {
        guard let n = reply.int else { throw unexpected(reply) }
        return n == 1
    }
}
