/// Records the successes of several jobs of one queue and claims as many next
/// jobs from it, in one script call. A busy worker's loops report through
/// one call (CompletionBatcher): one round trip and one fixed script cost for
/// the lot, instead of one per job.
public struct CompleteAndFetchCall: ScriptCall {
    public static let script = LuaScript(name: "complete_and_fetch",
                                         uses: [FetchCall.claimJobs, CompleteCall.completeJob, CallLimits.piece], body: #"""
-- KEYS[1..10], ARGV[1..5] the queue's keys (QueueKeys)
-- KEYS[11], ARGV[6..9]    the claim's own, as FetchCall sends them (see claim_args)
-- ARGV[10]   most jobs to claim
-- ARGV[11..] the limits the call settles, with the slots its runs give back
--            (call_limits; one Redis only), then per completed job: id,
--            attempt number the worker ran, result (JSON text)
-- Output:    {{1 stored or 0 stale, per completed job}, with limits: admit_in_call's
--            reply, then the fetch reply's parts (see FetchCall)}
local now, _, now_us_text = clock()
local q, claim = queue_keys(), claim_args()
local cl, first = call_limits(now)
-- A caller without a receipt has the limits' keys from KEYS[11] on.
if cl and cl.keys_after < 11 then claim.receipt.key = nil end
if fenced(claim.receipt) then return redis.error_reply('FENCED call settled as not run') end
local stored, flags, count = {}, {}, 0
for i = first, #ARGV, 3 do
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
if cl then table.insert(fetched, 1, admit_in_call(q, cl, fetched, claim)) end
table.insert(fetched, 1, stored)
return fetched
"""#)
    /// Most completions (and claims) in one call: keeps one script run short.
    public static let maxBatch = 64

    public let completions: [CompleteCall]
    public let fetch: FetchCall
    public let claimLimit: Int
    /// The limits settled in the call (one Redis only; see CallLimits).
    public let limits: CallLimits?

    /// Every completion must be in the fetch's queue (one script touches one
    /// queue's slot); `claimLimit` is how many jobs to claim (0 to 64).
    public init(completions: [CompleteCall], fetch: FetchCall, claimLimit: Int, limits: CallLimits? = nil) {
        precondition(completions.allSatisfy { $0.jobID.queue == fetch.queue }, "complete-and-fetch within one queue only")
        precondition(completions.allSatisfy { $0.workerID == fetch.workerID }, "one worker's completions only")
        precondition(completions.count <= Self.maxBatch && (0...Self.maxBatch).contains(claimLimit))
        precondition(fetch.parkedLimit == nil, "parked jobs are claimed one at a time, after their limit allowed it")
        precondition(limits.map { !$0.names.isEmpty && $0.names.count <= CallLimits.maxLimits
                                  && $0.releases.count == completions.count } ?? true, "one limit release per completion")
        self.completions = completions
        self.limits = limits
        self.fetch = fetch
        self.claimLimit = claimLimit
    }

    /// One completion, and one claim.
    public init(complete: CompleteCall, fetch: FetchCall) {
        self.init(completions: [complete], fetch: fetch, claimLimit: 1)
    }

    public var script: LuaScript { CompleteAndFetchCall.script }
    /// The fetch's keys and arguments (the queue's, then the claim's), then its own.
    public var keys: [String] {
        guard let limits else { return fetch.keys }
        return fetch.keys + limits.keys
    }
    public var args: [String] {
        var a = fetch.args
        a.append(String(claimLimit))
        if let limits {
            a += limits.args(queue: fetch.queue, keysBefore: fetch.keys.count,
                             holders: completions.map { LimitHolder($0.jobID, attempt: $0.attempt).member })
        } else {
            a.append("0")
        }
        a.reserveCapacity(a.count + 3 * completions.count)
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
        /// With `limits`: what became of each claimed job's limit, and the
        /// queues to wake (nil: the reply was lost and the call settled;
        /// the worker then gives back the runs' slots itself).
        public let limits: CallLimits.Outcome?

        public init(stored: [Bool], claimed: [FetchCall.Outcome], limits: CallLimits.Outcome? = nil) {
            self.stored = stored
            self.claimed = claimed
            self.limits = limits
        }
    }

    public func parse(_ reply: RedisReply) throws -> Output {
        guard let parts = reply.array, let flags = parts.first?.array, flags.count == completions.count else { throw unexpected(reply) }
        var fetched = parts.dropFirst()
        var limitsOutcome: CallLimits.Outcome?
        if let limits {
            guard let part = fetched.first, let outcome = limits.parse(part) else { throw unexpected(reply) }
            limitsOutcome = outcome
            fetched = fetched.dropFirst()
        }
        guard let claimed = FetchCall.outcomes(fetched, workerID: fetch.workerID) else { throw unexpected(reply) }
        // One admission per claimed job (none when the reply is 'empty' or 'paused').
        if let limitsOutcome, limitsOutcome.admissions.count != claimed.lazy.filter(\.isClaim).count { throw unexpected(reply) }
        return Output(stored: flags.map { $0.int == 1 }, claimed: claimed, limits: limitsOutcome)
    }
}
