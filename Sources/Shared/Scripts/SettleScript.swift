/// Settles a claiming call (FetchCall, CompleteAndFetchCall) whose reply was
/// lost: the connection broke or timed out after the call was sent, so it may
/// or may not have run. The calling loop's receipt tells: if it names the
/// call's token, the call ran; the jobs it claimed, which the loop never saw,
/// are given back to the head of their queue without counting the attempt,
/// and the flags of the completions it stored are returned.
///
/// Why: otherwise those jobs stay leased to a worker that does not run them
/// until the lease runs out, and recovery counts an attempt that never ran (a
/// job allowed one attempt would die without having run).
///
/// A call found not run is fenced: should it still reach Redis (a delayed
/// packet on the broken connection), it changes nothing.
///
/// Idempotent: settling again returns the same answer and gives back nothing more.
public struct SettleCall: ScriptCall {
    public static let script = LuaScript(name: "settle", uses: [CommonLua.queueKeys, GiveBackCall.giveBack, receipts],
                                         body: #"""
-- KEYS[1..10], ARGV[1..5] the queue's keys (QueueKeys)
-- KEYS[11]   receipt key of the calling loop
-- ARGV[6]    worker id
-- ARGV[7]    token of the call whose reply was lost
-- ARGV[8]    lease length ms (how long the receipt is kept)
-- Output:    {0}                              the call did not run, and now never will
--            {1, stored flags or '-', {ids given back}}   it ran
local q = queue_keys()
local receipt, worker, token = KEYS[11], ARGV[6], ARGV[7]
local parts = {}
for word in string.gmatch(redis.call('GET', receipt) or '', '%S+') do parts[#parts + 1] = word end
if parts[1] ~= token then
  -- Not run yet. It may still arrive (a delayed packet on the old
  -- connection): the fence makes it change nothing then.
  redis.call('SET', receipt, token .. ' void', 'PX', ARGV[8])
  return {0}
end
if parts[2] == 'void' then return {0} end
local given = {}
-- Last claimed first: each goes to the head of its list, so they end up in
-- the order they were claimed.
for i = #parts - 1, 3, -2 do
  if give_back(q, parts[i], worker, parts[i + 1]) then table.insert(given, 1, parts[i]) end
end
-- Settled: the receipt keeps the answer but no longer lists the claims.
if #parts > 2 then redis.call('SET', receipt, parts[1] .. ' ' .. parts[2], 'KEEPTTL') end
return {1, parts[2], given}
"""#)

    /// The receipt protocol's writing side, used by the claiming calls
    /// (FetchCall, CompleteAndFetchCall); this script is its reading side.
    static let receipts = LuaPiece("receipts", #"""
-- Receipts of the calls that claim jobs (see KeySchema.receipt):
-- "<token> <stored flags, or -> <id> <attempt> ...", kept one lease, written
-- when a call claimed jobs or reported completions, so that a loop whose reply
-- was lost can learn whether the call ran, and give back what it claimed.
-- A settle that found the call had not run leaves "<token> void": a fence.
-- receipt: {key (nil for none), token, ttl_ms (text), flags}

-- True when the receipt names this call's token or a later one: the call was
-- settled as not run (its loop gave up on it, and may have sent later ones),
-- so it arrives late and must change nothing.
local function fenced(receipt)
  if not receipt.key then return false end
  local last = redis.call('GET', receipt.key)
  return last ~= false and tonumber(string.match(last, '^%d+')) >= tonumber(receipt.token)
end

local function leave_receipt(receipt, claims)
  if not receipt.key or (#claims == 0 and receipt.flags == '-') then return end
  local text = receipt.token .. ' ' .. receipt.flags
  if #claims > 0 then text = text .. ' ' .. table.concat(claims, ' ') end
  redis.call('SET', receipt.key, text, 'PX', receipt.ttl_ms)
end
"""#)

    public enum Settlement: Equatable {
        /// The call never ran: nothing changed, it can be sent again.
        case notRun
        /// It ran: `stored` holds its completions' flags (as
        /// CompleteAndFetchCall.Output.stored), `givenBack` the ids of the
        /// jobs it had claimed that went back to their queue.
        case ran(stored: [Bool], givenBack: [String])
    }

    public let lost: FetchCall

    /// `lost`: the fetch call as sent (with its token): the lost call itself,
    /// or the one inside the lost CompleteAndFetchCall (which carries its
    /// receipt key and token). It must have a receipt key.
    public init(lost: FetchCall) {
        precondition(lost.receiptKey != nil, "only a call that leaves a receipt can be settled")
        self.lost = lost
    }

    public var script: LuaScript { SettleCall.script }
    /// The queue's keys and the receipt: the lost fetch's keys.
    public var keys: [String] { lost.keys }
    public var args: [String] { lost.queueKeys.args + [lost.workerID, lost.token, String(lost.leaseMs)] }

    public func parse(_ reply: RedisReply) throws -> Settlement {
        guard let parts = reply.array, let ran = parts.first?.int else { throw unexpected(reply) }
        if ran == 0 { return .notRun }
        guard parts.count == 3, let flags = parts[1].string, let given = parts[2].array else { throw unexpected(reply) }
        let stored = flags == "-" ? [] : flags.utf8.map { $0 == UInt8(ascii: "1") }
        return .ran(stored: stored, givenBack: given.compactMap(\.string))
    }
}
