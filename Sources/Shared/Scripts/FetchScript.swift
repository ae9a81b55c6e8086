/// Takes the next job of a queue for a worker, in one round trip: promotes due
/// scheduled jobs, pops by priority, leases the job and returns its fields.
public struct FetchCall: ScriptCall {
    public static let script = LuaScript(name: "fetch", uses: [claimJobs], body: #"""
-- KEYS[1..10], ARGV[1..5] the queue's keys (QueueKeys)
-- KEYS[11], ARGV[6..9]    the claim's own (see claim_args)
-- ARGV[10]  optional: claim from the jobs parked for this limit instead
--           (ParkCall), once the worker holds a slot of the limit
-- Output:    {'jobs', started_at µs, id, attempt, HGETALL of the job before the claim}
--                                                      now running under this worker's lease
--            {'empty', next due ms or -1, now ms}  nothing to run
--            {'paused', -1, now ms}                the queue is paused
-- (CompleteAndFetchCall claims several jobs with the same reply: 'jobs' then
-- one id, attempt and field list per job.) The claim's own values (state
-- running, attempt, started_at, this worker) are in the reply, not in the
-- field list: sending the list back as it was read saves rebuilding it, and
-- its parsing in the worker, for every job.
local now, _, now_us_text = clock()
local q, claim = queue_keys(), claim_args()
if fenced(claim.receipt) then return redis.error_reply('FENCED call settled as not run') end
if ARGV[10] then claim.parked = {name = ARGV[10], list = parked_list(q, ARGV[10])} end
return fetch_jobs(q, claim, 1, now, now_us_text)
"""#)

    /// The claim algorithm, shared with CompleteAndFetchCall.
    static let claimJobs = LuaPiece("claim_jobs", uses: [CommonLua.clock, CommonLua.queueKeys, CommonLua.priority,
                                                         CommonLua.countText, CommonLua.wake, SettleCall.receipts,
                                                         EventLogLua.log, ParkLua.keys, GroupLua.turns], #"""
-- The arguments of a claiming call (fetch, complete_and_fetch), after the queue's:
-- KEYS[11]  receipt key of the calling loop (absent: the caller keeps none), see KeySchema.receipt
-- ARGV[6]   lease length ms (also how long the receipt is kept)
-- ARGV[7]   worker id
-- ARGV[8]   most scheduled jobs to promote in this call
-- ARGV[9]   this call's token, written to the receipt
local function claim_args()
  return {lease_ms = tonumber(ARGV[6]), worker = ARGV[7], promote_limit = tonumber(ARGV[8]),
          receipt = {key = KEYS[11], token = ARGV[9], ttl_ms = ARGV[6], flags = '-'}}
end

-- The state and attempts of a job's fields as HGETALL returned them (a flat
-- field, value list), in one pass, and whether it has an event log (`ev`).
local function state_and_attempts(flat)
  local state, attempts, logged = nil, nil, false
  for i = 1, #flat, 2 do
    local f = flat[i]
    if f == 'state' then state = flat[i + 1] elseif f == 'attempts' then attempts = flat[i + 1]
    elseif f == 'ev' then logged = true end
  end
  return state, attempts, logged
end

-- Claims up to `want` jobs of a queue for a worker: promotes due scheduled
-- jobs, pops by priority, leases the jobs. Returns the fetch reply (see
-- FetchCall).
local function fetch_jobs(q, claim, want, now, now_us_text)
  -- Ids whose job hash is gone (evicted under a maxmemory policy, deleted by
  -- hand) are dropped as they come up, and counted in the queue's stats.
  local missing = 0
  local due = redis.call('ZRANGEBYSCORE', q.scheduled, '-inf', now, 'LIMIT', 0, claim.promote_limit)
  for _, id in ipairs(due) do
    redis.call('ZREM', q.scheduled, id)
    local key = q.job_prefix .. id
    local f = redis.call('HMGET', key, 'state', 'priority', 'attempts', 'group')
    if f[1] == 'scheduled' then
      redis.call('HSET', key, 'state', 'queued')
      push_queued(q, id, priority_rank(f[2]), f[4])
      log_state(q, id, 'queued', f[3] or '0')
    elseif not f[1] and not f[2] then
      missing = missing + 1
    end
  end
  if #due > 0 then wake(q.wake) end
  local function count_missing()
    if missing > 0 then redis.call('HINCRBY', q.stats, 'missing', missing) end
  end

  local claims = {}
  if redis.call('EXISTS', q.paused) == 1 then
    count_missing()
    leave_receipt(claim.receipt, claims)
    return {'paused', -1, now}
  end

  -- Ids whose job was cancelled or has expired are dropped as they come up;
  -- the bound keeps one call short even after a mass cancel. LMPOP (Redis 7)
  -- takes from the most urgent non-empty list in one command.
  local reply = {'jobs', now_us_text}
  local leases = {}
  local deadline = tostring(now + claim.lease_ms)
  -- As text once; a limit's holds of these claims end with their leases (admit_in_call).
  claim.lease_deadline = deadline
  local claimed, skipped = 0, 0
  while claimed < want and skipped < 1000 do
    local popped
    if claim.parked then
      popped = redis.call('LMPOP', 1, claim.parked.list, 'LEFT', 'COUNT', want - claimed)
    else
      popped = redis.call('LMPOP', 4, q.pending[1], q.pending[2], q.pending[3], q.pending[4], 'LEFT',
                          'COUNT', want - claimed)
    end
    if not popped then break end
    for _, entry in ipairs(popped[2]) do
      -- A group's turn token stands for the group's oldest job (GroupLua).
      local id = entry
      if is_group_token(entry) then
        local rank = 1
        while q.pending[rank] ~= popped[1] and rank < 4 do rank = rank + 1 end
        id = group_turn(q, entry, rank) or ''
      end
      local key = q.job_prefix .. id
      local job = redis.call('HGETALL', key)
      local state, attempts, logged = state_and_attempts(job)
      -- A hash without a state is damaged: hand it out so the worker fails it
      -- with a clear error instead of dropping it silently.
      if state == 'queued' or (not state and #job > 0) then
        -- Plain digits only: tonumber would also take '1.5' or '1e20', which
        -- would make an attempt the worker cannot read. A damaged count is
        -- counted as 0; the worker then fails the job for its damaged field.
        if attempts and not (#attempts <= 9 and string.match(attempts, '^%d+$')) then attempts = nil end
        attempts = count_text((tonumber(attempts) or 0) + 1)
        redis.call('HSET', key, 'state', 'running', 'attempts', attempts, 'started_at', now_us_text, 'worker',
                   claim.worker)
        if claim.parked then redis.call('HDEL', key, 'parked') end
        log_state(q, id, 'running', attempts, nil, nil, logged)
        claims[#claims + 1] = id
        claims[#claims + 1] = attempts
        leases[#leases + 1] = deadline
        leases[#leases + 1] = id
        reply[#reply + 1] = id
        reply[#reply + 1] = attempts
        reply[#reply + 1] = job
        claimed = claimed + 1
      else
        skipped = skipped + 1
        -- (An empty id is a turn of a group whose jobs were all cancelled.)
        if #job == 0 and id ~= '' then missing = missing + 1 end
      end
    end
  end
  flush_group_turns(q)
  count_missing()
  leave_receipt(claim.receipt, claims)
  if claim.parked and redis.call('EXISTS', claim.parked.list) == 0 then
    redis.call('SREM', parked_set(q), claim.parked.name)
  end
  if claimed > 0 then
    redis.call('ZADD', q.lease, unpack(leases))
    return reply
  end

  local next_due = redis.call('ZRANGE', q.scheduled, 0, 0, 'WITHSCORES')
  return {'empty', next_due[2] or -1, now}
end
"""#)

    public enum Outcome {
        /// A job now leased to this worker.
        case job(Job)
        /// A job whose hash could not be read (damaged in Redis): it is leased,
        /// so the worker must fail it with `error`.
        case damaged(JobID, attempt: Int, error: String)
        /// Nothing to run; `nextDueInMs` is when the next scheduled job is due (nil: none).
        case empty(nextDueInMs: Int64?)
        case paused

        /// A job leased to the worker (to run, or to fail as damaged).
        public var isClaim: Bool { claimedID != nil }

        /// The id of the job leased (nil: none was).
        public var claimedID: JobID? {
            switch self {
            case .job(let job): return job.id
            case .damaged(let id, _, _): return id
            case .empty, .paused: return nil
            }
        }
    }

    public var queue: String { queueKeys.queue }
    public let workerID: String
    public let leaseMs: Int64
    public let promoteLimit: Int
    /// The calling loop's receipt key (nil when the caller keeps none).
    public let receiptKey: String?
    /// Claims from the jobs parked for this limit instead of the pending lists.
    public var parkedLimit: String?
    /// Names one sending of this call in the receipt: a caller with a loop
    /// sets a new, larger one for every call (a decimal number), so that a
    /// lost reply can be settled (SettleCall).
    public var token = ""
    let queueKeys: QueueKeys
    /// Built once: a worker keeps one call per queue and sends it for every
    /// job (rebuilding the key names showed in profiles).
    public let keys: [String]

    /// `loop` names the worker's loop that sends the call (unique within the
    /// worker); with one, each call leaves a receipt under that name.
    public init(schema: KeySchema, queue: String, workerID: String, leaseMs: Int64, promoteLimit: Int = 100,
                loop: String? = nil) {
        queueKeys = schema.queueKeys(queue)
        self.workerID = workerID
        self.leaseMs = leaseMs
        self.promoteLimit = promoteLimit
        receiptKey = loop.map { schema.receipt(queue, caller: "\(workerID)/\($0)") }
        keys = queueKeys.keys + (receiptKey.map { [$0] } ?? [])
    }

    /// ARGV as claim_args reads it, after the queue's.
    public var args: [String] {
        precondition(receiptKey == nil || !token.isEmpty, "a call that leaves a receipt needs a token")
        return queueKeys.args + [String(leaseMs), workerID, String(promoteLimit), token] + (parkedLimit.map { [$0] } ?? [])
    }

    public var script: LuaScript { FetchCall.script }

    public func parse(_ reply: RedisReply) throws -> Outcome {
        guard let parts = reply.array, let outcomes = FetchCall.outcomes(parts[...], workerID: workerID), let first = outcomes.first else {
            throw unexpected(reply)
        }
        return first
    }

    /// Reads a fetch reply (shared with CompleteAndFetchCall): one outcome per
    /// claimed job, or a single `.empty` or `.paused`.
    static func outcomes(_ parts: ArraySlice<RedisReply>, workerID: String) -> [Outcome]? {
        guard let kind = parts.first?.string else { return nil }
        let rest = parts.dropFirst()
        switch kind {
        case "jobs":
            guard let startedUs = rest.first?.int, rest.count >= 4, (rest.count - 1) % 3 == 0 else { return nil }
            var claimed: [Outcome] = []
            claimed.reserveCapacity(rest.count / 3)
            var i = rest.startIndex + 1
            while i < rest.endIndex {
                guard let idText = rest[i].string, let id = JobID(parsing: idText),
                      let attempt = rest[i + 1].int else { return nil }
                claimed.append(claim(id, attempt: Int(attempt), startedUs: startedUs, hash: rest[i + 2].hash, workerID: workerID))
                i += 3
            }
            return claimed
        case "empty":
            guard rest.count == 2, let due = rest.first?.int, let now = rest.last?.int else { return nil }
            return [.empty(nextDueInMs: due < 0 ? nil : max(0, due - now))]
        case "paused":
            return [.paused]
        default:
            return nil
        }
    }

    /// The job as the claim left it: its fields as read, with the claim's
    /// values from the reply.
    private static func claim(_ id: JobID, attempt: Int, startedUs: Int64, hash: [String: String], workerID: String) -> Outcome {
        do {
            var job = try Job(id: id, hash: hash)
            job.state = .running
            job.attempts = attempt
            job.startedUs = startedUs
            job.worker = workerID
            return .job(job)
        } catch {
            return .damaged(id, attempt: attempt, error: "\(error)")
        }
    }
}
