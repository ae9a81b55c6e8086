/// Records the successes of several jobs of one queue and claims as many next
/// jobs from it, in one script call. A busy worker's loops report through
/// one call (CompletionBatcher): one round trip and one fixed script cost for
/// the lot, instead of one per job.
public struct CompleteAndFetchCall: ScriptCall {
    public static let script = LuaScript(name: "complete_and_fetch", uses: [FetchCall.claimJobs, CompleteCall.completeJob],
                                         body: #"""
-- KEYS[1..10], ARGV[1..5] the queue's keys (QueueKeys)
-- KEYS[11], ARGV[6..9]    the claim's own, as FetchCall sends them (see claim_args)
-- ARGV[10]   most jobs to claim
-- ARGV[11..] per completed job: id, attempt number the worker ran, result (JSON text)
-- Output:    {{1 stored or 0 stale, per completed job}, then the fetch reply's parts (see FetchCall)}
local now, _, now_us_text = clock()
local q, claim = queue_keys(), claim_args()
if fenced(claim.receipt) then return redis.error_reply('FENCED call settled as not run') end
local stored, flags, count = {}, {}, 0
for i = 11, #ARGV, 3 do
  local outcome = complete_job(q, ARGV[i], claim.worker, ARGV[i + 1], ARGV[i + 2], now_us_text)
  local ok = outcome ~= STALE
  stored[#stored + 1] = ok and 1 or 0
  flags[#flags + 1] = ok and '1' or '0'
  if outcome == STORED then count = count + 1 end
end
count_successes(q, count, now)
-- The receipt also records which completions were stored.
claim.receipt.flags = #flags > 0 and table.concat(flags) or '-'
local fetched = fetch_jobs(q, claim, tonumber(ARGV[10]), now, now_us_text)
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
        precondition(fetch.parkedLimit == nil, "parked jobs are claimed one at a time, after their limit allowed it")
        self.completions = completions
        self.fetch = fetch
        self.claimLimit = claimLimit
    }

    /// One completion, and one claim.
    public init(complete: CompleteCall, fetch: FetchCall) {
        self.init(completions: [complete], fetch: fetch, claimLimit: 1)
    }

    public var script: LuaScript { CompleteAndFetchCall.script }
    /// The fetch's keys and arguments (the queue's, then the claim's), then its own.
    public var keys: [String] { fetch.keys }
    public var args: [String] {
        var a = fetch.args
        a.reserveCapacity(a.count + 1 + 3 * completions.count)
        a.append(String(claimLimit))
        for c in completions {
            a += [c.jobID.text, String(c.attempt), FieldCipher.stored(c.resultJSON, job: c.jobID.text, field: JobField.result)]
        }
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
