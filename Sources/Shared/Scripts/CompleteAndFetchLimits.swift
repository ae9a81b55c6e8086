/// The limits a complete-and-fetch call settles itself, on one Redis (not
/// Cluster): it gives back the slots of the runs it records and takes the
/// slots of the jobs it claims (parking those refused), so that a limit that
/// does not bind costs no call of its own. On Cluster a limit has its own
/// slot (KeySchema), so the worker calls it apart (LimitGate).
///
/// Only the limits the call declares (their keys in KEYS, as every script
/// declares its keys) are settled here: the worker declares those of the runs
/// it records, which are usually those of the jobs it claims next. A claimed
/// job under another limit, any grouped job once some group has a cap, and a
/// job whose hash looks damaged (no state, an odd cost) are left to the worker.
///
/// A call whose reply is lost is settled (SettleCall gives its claims back):
/// the slots it took for them stay held until they lapse with the lease, as a
/// crashed worker's do; the runs' slots it gave back are given back again by
/// the worker, which changes nothing.
public struct CallLimits: Sendable {
    /// The limits declared, in order; their keys follow the fetch's in KEYS.
    public let names: [String]
    /// The worker's SPOOL_LIMITS_BY_TYPE, for jobs that name no limit: job
    /// type → index in `names` (only the types mapped to a declared limit).
    public let byType: [(type: String, index: Int)]
    /// Whether any group has a cap (a limit `group:<name>`): a grouped job
    /// is then left to the worker, which knows the caps.
    public let groupCaps: Bool
    /// Per completion, in order: the index in `names` of the limit whose
    /// slot its run held, with the units to charge on top of its declared
    /// cost (nil: none to give back here).
    public let releases: [(index: Int, extraUnits: Int64)?]
    /// The limits' keys, in `names`' order (limit_keys' order each).
    let keys: [String]

    public init(schema: KeySchema, names: [String], byType: [(type: String, index: Int)], groupCaps: Bool,
                releases: [(index: Int, extraUnits: Int64)?]) {
        self.names = names
        keys = names.flatMap { schema.limitKeys($0) }
        self.byType = byType
        self.groupCaps = groupCaps
        self.releases = releases
    }

    /// Most limits one call declares: keeps the call's key list short.
    public static let maxLimits = 8

    /// What became of a claimed job's limit in the call.
    public enum Admission: Equatable, Sendable {
        /// Not settled here: the worker asks its limits itself (LimitGate).
        case leftToWorker
        /// It holds a slot of `limit`, and `cost` units of its budget were charged: it may run.
        case granted(limit: String, cost: Int64)
        /// Its limit refused: it was parked in the same call, the attempt not counted.
        case parked(limit: String, reason: String, retryInMs: Int64)
    }

    static let piece = LuaPiece("call_limits", uses: [LimitLua.keys, ParkLua.park], #"""
-- ARGV[11]   M: how many limits the call declares (0: none; the completions follow at ARGV[12])
-- With M > 0:
-- ARGV[12]   the queue's name   ARGV[13] '1' when groups have caps   ARGV[14] T type mappings
-- ARGV[15]   KEYS index after which the limits' keys start (4 each, limit_keys' order)
-- ARGV[16..] the M limits' names, then T pairs: job type, limit number (1..M),
--            then per limit the slots of the runs the call records: R, then R
--            holders (job id @ attempt) given back as they are, then S, then S
--            pairs: holder, units to charge on top of its cost
-- Returns the call's limits (nil with none) and where the completions start.
-- (The worker names the holders: the script then gives back a limit's slots
-- with one ZREM over a range of ARGV, with no Lua work per run.)
local function call_limits(now)
  local m = tonumber(ARGV[11])
  if m == 0 then return nil, 12 end
  local cl = {queue = ARGV[12], group_caps = ARGV[13] == '1', keys_after = tonumber(ARGV[15]), names = {}, number = {},
              by_type = {}, sessions = {}}
  for i = 1, m do
    local name, k = ARGV[15 + i], cl.keys_after + 4 * (i - 1)
    cl.names[i] = name
    cl.number[name] = i
    cl.sessions[i] = limit_session({def = KEYS[k + 1], holders = KEYS[k + 2], starts = KEYS[k + 3], waiting = KEYS[k + 4]}, now)
  end
  local at = 16 + m
  for _ = 1, tonumber(ARGV[14]) do
    cl.by_type[ARGV[at]] = tonumber(ARGV[at + 1])
    at = at + 2
  end
  for i = 1, m do
    local s, r = cl.sessions[i], tonumber(ARGV[at])
    s.plain_from, s.plain_to = at + 1, at + r
    local settled = tonumber(ARGV[at + r + 1])
    s.settled_from, s.settled_to = at + r + 2, at + r + 1 + 2 * settled
    at = s.settled_to + 1
  end
  return cl, at
end

-- Gives back the slots of the runs the call records (call_limits).
local function release_runs(s)
  release_slots(s, s.plain_from, s.plain_to)
  for i = s.settled_from, s.settled_to, 2 do release_slot(s, ARGV[i], tonumber(ARGV[i + 1]), 0) end
end

-- The limit a claimed job takes here (its number), from its fields as the
-- claim read them; nil when the worker must decide (another limit, a group
-- that may have a cap, a damaged hash or cost).
local function limit_here(cl, fields)
  local limit, cost, group, jtype, state
  for j = 1, #fields, 2 do
    local f = fields[j]
    if f == 'limit' then limit = fields[j + 1] elseif f == 'cost' then cost = fields[j + 1]
    elseif f == 'group' then group = fields[j + 1] elseif f == 'type' then jtype = fields[j + 1]
    elseif f == 'state' then state = fields[j + 1] end
  end
  if not state or (group and cl.group_caps) then return nil end
  -- A cost as enqueue writes it (0 to 1,000,000,000), else the worker finds the hash damaged.
  if cost and not (#cost <= 10 and string.match(cost, '^%d+$')) then return nil end
  local n
  if limit then n = cl.number[limit] elseif jtype then n = cl.by_type[jtype] end
  return n, tonumber(cost) or 0
end

-- Takes the slots of the jobs the call claimed (the fetch reply), parking
-- those refused. Returns per claimed job: 0 (left to the worker), the limit
-- number (granted; {number, cost} when the job declared a cost) or {limit
-- number, reason, ms} (parked); then per limit whose release freed a slot:
-- its number and the queues to wake. A limit that grants all of the call's
-- jobs (grants_all: the common case of a limit that does not bind) takes
-- their holds in one ZADD. (A grant is a plain number unless the job
-- declared a cost: every table in the reply costs Redis a conversion, and
-- the Lua work here is most of what a limit adds to a call; see
-- docs/performance-notes.md.)
local function admit_in_call(q, cl, fetched, claim)
  -- The runs' slots first, so that the claims can have them.
  for _, s in ipairs(cl.sessions) do release_runs(s) end
  local admissions = {}
  if fetched[1] == 'jobs' then
    -- Each claim's limit number (0: none here), its cost, and how many ask each limit.
    local claims, costs, asked = (#fetched - 2) / 3, {}, {}
    for j = 1, claims do
      local n, cost = limit_here(cl, fetched[3 * j + 2])
      n = n or 0
      admissions[j] = n
      if n > 0 then
        costs[j] = cost
        asked[n] = (asked[n] or 0) + 1
      end
    end
    for n, s in ipairs(cl.sessions) do
      local count = asked[n]
      if count then
        -- Holds taken together, each ending with its lease (the claims'
        -- deadline, as text); else one by one.
        local entries = grants_all(s, count) and {}
        for j = 1, claims do
          if admissions[j] == n then
            local id = fetched[3 * j]
            local holder, refusal = id .. '@' .. fetched[3 * j + 1], nil
            if entries then
              entries[#entries + 1] = claim.lease_deadline
              entries[#entries + 1] = holder
            else
              local r = acquire_slot(s, holder, costs[j], claim.lease_ms, cl.queue)
              if r[1] ~= 1 then refusal = r end
            end
            if refusal then
              park_job(q, id, cl.names[n], false)
              admissions[j] = {n, refusal[2], refusal[3]}
            elseif costs[j] > 0 then
              admissions[j] = {n, costs[j]}
            end
          end
        end
        if entries then grant_holds(s, entries, claim.lease_ms) end
      end
    end
  end
  local wakes = {}
  for n, s in ipairs(cl.sessions) do
    local queues = session_wake(s)
    end_session(s)
    if #queues > 0 then
      wakes[#wakes + 1] = n
      wakes[#wakes + 1] = queues
    end
  end
  return {admissions, wakes}
end
"""#)

    /// ARGV from 11 on, before the completions; `holders`: the runs' (one
    /// per completion, in `releases`' order).
    func args(queue: String, keysBefore: Int, holders: [String]) -> [String] {
        var a = [String(names.count), queue, groupCaps ? "1" : "0", String(byType.count), String(keysBefore)]
        a += names
        for (type, index) in byType { a += [type, String(index + 1)] }
        for limit in names.indices {
            var plain: [String] = [], settled: [String] = []
            for case let (holder, release?) in zip(holders, releases) where release.index == limit {
                if release.extraUnits == 0 {
                    plain.append(holder)
                } else {
                    settled += [holder, String(release.extraUnits)]
                }
            }
            a.append(String(plain.count))
            a += plain
            a.append(String(settled.count / 2))
            a += settled
        }
        return a
    }

    /// What the call did with its claims' limits, from its reply's part.
    public struct Outcome {
        /// Per claimed job, in the order claimed.
        public let admissions: [Admission]
        /// Per limit that freed a slot: the queues whose jobs wait for it.
        /// (The runs' slots were all given back: CallLimits.releases.)
        public let wakes: [(limit: String, queues: [String])]
    }

    func parse(_ part: RedisReply) -> Outcome? {
        guard let p = part.array, p.count == 2, let a = p[0].array, let w = p[1].array, w.count % 2 == 0 else { return nil }
        var admissions: [Admission] = []
        admissions.reserveCapacity(a.count)
        for item in a {
            if let n = item.int {
                if n == 0 {
                    admissions.append(.leftToWorker)
                } else {
                    guard names.indices.contains(Int(n) - 1) else { return nil }
                    admissions.append(.granted(limit: names[Int(n) - 1], cost: 0))
                }
                continue
            }
            guard let r = item.array, let n = r.first?.int, names.indices.contains(Int(n) - 1) else { return nil }
            let limit = names[Int(n) - 1]
            if r.count == 2, let cost = r[1].int {
                admissions.append(.granted(limit: limit, cost: cost))
            } else if r.count == 3, let reason = r[1].string, let ms = r[2].int {
                admissions.append(.parked(limit: limit, reason: reason, retryInMs: ms))
            } else {
                return nil
            }
        }
        var wakes: [(String, [String])] = []
        for i in stride(from: 0, to: w.count, by: 2) {
            guard let n = w[i].int, names.indices.contains(Int(n) - 1), let queues = w[i + 1].array else { return nil }
            wakes.append((names[Int(n) - 1], queues.compactMap(\.string)))
        }
        return Outcome(admissions: admissions, wakes: wakes)
    }
}
