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
    public static let script = LuaPrelude.script("settle", #"""
-- KEYS[1..4] pending lists (urgent, high, normal, low)
-- KEYS[5]    lease zset
-- KEYS[6]    wake list
-- ARGV[1]    job key prefix
-- ARGV[2]    worker id
-- ARGV[3]    receipt key of the calling loop
-- ARGV[4]    token of the call whose reply was lost
-- ARGV[5]    lease length ms (how long the receipt is kept)
-- Output:    {0}                              the call did not run, and now never will
--            {1, stored flags or '-', {ids given back}}   it ran
local parts = {}
for word in string.gmatch(redis.call('GET', ARGV[3]) or '', '%S+') do parts[#parts + 1] = word end
if parts[1] ~= ARGV[4] then
  -- Not run yet. It may still arrive (a delayed packet on the old
  -- connection): the fence makes it change nothing then.
  redis.call('SET', ARGV[3], ARGV[4] .. ' void', 'PX', ARGV[5])
  return {0}
end
if parts[2] == 'void' then return {0} end
local q = {job_prefix = ARGV[1], lease = KEYS[5], wake = KEYS[6], pending = {KEYS[1], KEYS[2], KEYS[3], KEYS[4]}}
local given = {}
-- Last claimed first: each goes to the head of its list, so they end up in
-- the order they were claimed.
for i = #parts - 1, 3, -2 do
  if give_back(q, parts[i], ARGV[2], parts[i + 1]) then table.insert(given, 1, parts[i]) end
end
-- Settled: the receipt keeps the answer but no longer lists the claims.
if #parts > 2 then redis.call('SET', ARGV[3], parts[1] .. ' ' .. parts[2], 'KEEPTTL') end
return {1, parts[2], given}
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
        precondition(!lost.receiptKey.isEmpty, "only a call that leaves a receipt can be settled")
        self.lost = lost
    }

    public var script: LuaScript { SettleCall.script }
    public var keys: [String] {
        lost.schema.pendingLists(lost.queue) + [lost.schema.lease(lost.queue), lost.schema.wake(lost.queue)]
    }
    public var args: [String] {
        [lost.schema.jobPrefix(lost.queue), lost.workerID, lost.receiptKey, lost.token, String(lost.leaseMs)]
    }

    public func parse(_ reply: RedisReply) throws -> Settlement {
        guard let parts = reply.array, let ran = parts.first?.int else { throw unexpected(reply) }
        if ran == 0 { return .notRun }
        guard parts.count == 3, let flags = parts[1].string, let given = parts[2].array else { throw unexpected(reply) }
        let stored = flags == "-" ? [] : flags.utf8.map { $0 == UInt8(ascii: "1") }
        return .ran(stored: stored, givenBack: given.compactMap(\.string))
    }
}
