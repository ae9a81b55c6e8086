/// Stores a running job's latest progress, if the worker still holds it.
public struct ProgressCall: ScriptCall {
    public static let script = LuaScript(name: "progress", uses: [CommonLua.queueKeys, CommonLua.lease, EventLogLua.log], body: #"""
-- KEYS[1..10], ARGV[1..5] the queue's keys (QueueKeys)
-- KEYS[11]  job hash
-- ARGV[6]   job id
-- ARGV[7]   worker id
-- ARGV[8]   attempt
-- ARGV[9]   progress (JSON text)
-- ARGV[10]  most entries in the job's event log
-- Output:  1 stored, 0 not (the lease was lost)
local q = event_keys(queue_keys())
if not holds_lease(q, ARGV[6], ARGV[7], ARGV[8]) then return 0 end
redis.call('HSET', KEYS[11], 'progress', ARGV[9])
-- Into the job's log too, when it has one and room (progress is written at
-- most every 200 ms, and only the latest matters, so it is not counted as dropped).
local log = q.events_prefix .. ARGV[6]
if redis.call('EXISTS', log) == 1 and redis.call('XLEN', log) < tonumber(ARGV[10]) then
  redis.call('XADD', log, '*', 't', 'progress', 'a', ARGV[8], 'd', ARGV[9])
  redis.call('PUBLISH', q.events_channel, ARGV[6])
end
return 1
"""#)

    public let jobID: JobID
    public let workerID: String
    public let attempt: Int
    public let progressJSON: String
    /// The event log's entry cap (SPOOL_EVENT_LOG_MAX_EVENTS).
    public var maxEvents = 10_000
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
            + [jobID.text, workerID, String(attempt), FieldCipher.stored(progressJSON, job: jobID.text, field: JobField.progress), String(maxEvents)]
    }

    public func parse(_ reply: RedisReply) throws -> Bool {
        guard let n = reply.int else { throw unexpected(reply) }
        return n == 1
    }
}
