/// Records the successes of several jobs of one queue and claims as many next
/// jobs from it, in one script call. A busy worker's loops report through
/// one call (CompletionBatcher): one round trip and one fixed script cost for
/// the lot, instead of one per job.
public struct CompleteAndFetchCall: ScriptCall {
    public static let script = LuaPrelude.script("complete_and_fetch", #"""
-- KEYS[1..4] pending lists (urgent, high, normal, low)
-- KEYS[5]    scheduled zset
-- KEYS[6]    lease zset
-- KEYS[7]    paused flag
-- KEYS[8]    wake list
-- KEYS[9]    stats hash
-- ARGV[1]    worker id
-- ARGV[2]    lease length ms
-- ARGV[3]    most scheduled jobs to promote in this call
-- ARGV[4]    most jobs to claim
-- ARGV[5..9] job, idempotency, throughput and waiting key prefixes; finished channel
-- ARGV[10]   receipt key of the calling loop ('' for none), see KeySchema.receipt
-- ARGV[11]   this call's token, written to the receipt with the stored flags
-- ARGV[12..] per completed job: id, attempt number the worker ran, result (JSON text)
-- Output:    {{1 stored or 0 stale, per completed job}, then the fetch reply's parts (see FetchCall)}
local now, now_us, now_us_text = clock()
local q = {job_prefix = ARGV[5], idem_prefix = ARGV[6], throughput_prefix = ARGV[7], waiting_prefix = ARGV[8],
           channel = ARGV[9], lease = KEYS[6], stats = KEYS[9], pending = {KEYS[1], KEYS[2], KEYS[3], KEYS[4]},
           scheduled = KEYS[5], paused = KEYS[7], wake = KEYS[8]}
local worker = ARGV[1]
q.receipt = {key = ARGV[10], token = ARGV[11], ttl_ms = ARGV[2]}
if fenced(q.receipt) then return redis.error_reply('FENCED call settled as not run') end
local stored, flags, count = {}, {}, 0
for i = 12, #ARGV, 3 do
  local ok = complete_job(q, ARGV[i], worker, ARGV[i + 1], ARGV[i + 2], now_us_text)
  stored[#stored + 1] = ok and 1 or 0
  flags[#flags + 1] = ok and '1' or '0'
  if ok then count = count + 1 end
end
count_successes(q, count, now)
q.receipt.flags = #flags > 0 and table.concat(flags) or '-'
local fetched = fetch_jobs(q, worker, tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), now, now_us,
                           now_us_text)
table.insert(fetched, 1, stored)
return fetched
"""#)

    /// Most completions (and claims) in one call: keeps one script run short.
    public static let maxBatch = 64

    public let completions: [CompleteCall]
    public let fetch: FetchCall
    public let claimLimit: Int

    /// Every completion must be in the fetch's queue (one script touches one
    /// queue's slot); `claimLimit` is how many jobs to claim (0 to 64).
    public init(completions: [CompleteCall], fetch: FetchCall, claimLimit: Int) {
        precondition(completions.allSatisfy { $0.jobID.queue == fetch.queue }, "complete-and-fetch within one queue only")
        precondition(completions.allSatisfy { $0.workerID == fetch.workerID }, "one worker's completions only")
        precondition(completions.count <= Self.maxBatch && (0...Self.maxBatch).contains(claimLimit))
        self.completions = completions
        self.fetch = fetch
        self.claimLimit = claimLimit
    }

    /// One completion, and one claim.
    public init(complete: CompleteCall, fetch: FetchCall) {
        self.init(completions: [complete], fetch: fetch, claimLimit: 1)
    }

    public var script: LuaScript { CompleteAndFetchCall.script }
    /// The fetch's keys, which end with the stats hash (KEYS[9]).
    public var keys: [String] { fetch.keys }
    public var args: [String] {
        var a = [fetch.workerID, fetch.fixedArgs[1], fetch.fixedArgs[3], String(claimLimit)]
        a += fetch.schema.finishPrefixes(fetch.queue)
        a += [fetch.receiptKey, fetch.checkedToken]
        a.reserveCapacity(a.count + 3 * completions.count)
        for c in completions { a += [c.jobID.text, String(c.attempt), c.resultJSON] }
        return a
    }

    public struct Output {
        /// Per completion, in order: stored, or dropped because the lease was lost.
        public let stored: [Bool]
        /// The jobs claimed (`.job`, or `.damaged` to fail), or a single
        /// `.empty` or `.paused` when none was.
        public let claimed: [FetchCall.Outcome]

        public init(stored: [Bool], claimed: [FetchCall.Outcome]) {
            self.stored = stored
            self.claimed = claimed
        }
    }

    public func parse(_ reply: RedisReply) throws -> Output {
        guard let parts = reply.array, let flags = parts.first?.array, flags.count == completions.count,
              let claimed = FetchCall.outcomes(parts.dropFirst(), workerID: fetch.workerID) else { throw unexpected(reply) }
        return Output(stored: flags.map { $0.int == 1 }, claimed: claimed)
    }
}
