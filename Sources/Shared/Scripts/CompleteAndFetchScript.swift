/// Records a job's success and takes the worker's next job from the same
/// queue in one script call: one round trip and one script run per job
/// instead of two, on the hot path of a busy worker.
public struct CompleteAndFetchCall: ScriptCall {
    public static let script = LuaPrelude.script("complete_and_fetch", #"""
-- KEYS[1..4] pending lists (urgent, high, normal, low)
-- KEYS[5]    scheduled zset
-- KEYS[6]    lease zset
-- KEYS[7]    paused flag
-- KEYS[8]    wake list
-- KEYS[9]    stats hash
-- KEYS[10]   hash of the job being completed
-- ARGV[1]    id of the job being completed
-- ARGV[2]    worker id
-- ARGV[3]    attempt number the worker ran
-- ARGV[4]    result (JSON text)
-- ARGV[5..9] job, idempotency, throughput and waiting key prefixes; finished channel
-- ARGV[10]   lease length ms
-- ARGV[11]   most scheduled jobs to promote in this call
-- Output:    {1 stored or 0 stale, then the fetch reply's parts (see FetchCall)}
local now, now_us = clock()
local q = {job_prefix = ARGV[5], idem_prefix = ARGV[6], throughput_prefix = ARGV[7], waiting_prefix = ARGV[8],
           channel = ARGV[9], lease = KEYS[6], stats = KEYS[9], pending = {KEYS[1], KEYS[2], KEYS[3], KEYS[4]},
           scheduled = KEYS[5], paused = KEYS[7], wake = KEYS[8]}
local stored = complete_job(q, ARGV[1], ARGV[2], ARGV[3], ARGV[4], now, now_us) and 1 or 0
local fetched = fetch_next(q, ARGV[2], tonumber(ARGV[10]), tonumber(ARGV[11]), now, now_us)
table.insert(fetched, 1, stored)
return fetched
"""#)

    public let complete: CompleteCall
    public let fetch: FetchCall

    /// Both must be in the same queue (one script touches one queue's slot).
    public init(complete: CompleteCall, fetch: FetchCall) {
        precondition(complete.jobID.queue == fetch.queue, "complete-and-fetch within one queue only")
        self.complete = complete
        self.fetch = fetch
    }

    public var script: LuaScript { CompleteAndFetchCall.script }
    public var keys: [String] { fetch.keys + [complete.schema.stats(fetch.queue), complete.schema.job(complete.jobID)] }
    public var args: [String] {
        var a = [complete.jobID.text, complete.workerID, String(complete.attempt), complete.resultJSON, fetch.args[0],
                 complete.schema.idempotencyPrefix(fetch.queue), complete.schema.throughputPrefix(fetch.queue),
                 complete.schema.waitingPrefix(fetch.queue), complete.schema.finishedChannel]
        a.append(fetch.args[1])
        a.append(fetch.args[3])
        return a
    }

    /// Whether the result was stored, and what the fetch found.
    public func parse(_ reply: RedisReply) throws -> (stored: Bool, next: FetchCall.Outcome) {
        guard let parts = reply.array, let stored = parts.first?.int,
              let next = FetchCall.outcome(Array(parts.dropFirst()), workerID: fetch.workerID) else { throw unexpected(reply) }
        return (stored == 1, next)
    }
}
