/// Fair turns between the groups (tenants) of a queue, inside the queue's slot.
///
/// A job with a `group` waits in its group's own line (`group:<name>:<rank>`,
/// one per priority) instead of the pending list; the pending list holds one
/// turn token for the group (`@<name>`, never a job id: ids hold `~` and start
/// with a queue name). Fetch pops the token like an id, takes the group's
/// oldest job, and puts the token back at the tail while the group has more.
/// So a group with 100,000 jobs takes one turn in the list, like any other
/// group or ungrouped job: O(1) per fetch, whatever the number of groups.
///
/// Counts: the `groups` hash holds, per group with jobs waiting, how many of
/// its lines (one per priority) hold jobs: it changes when a line opens or
/// empties, not with every job (an `HINCRBY` per job cost about 10k Redis
/// instructions, a quarter of what groups add to a job; make bench-ir). The
/// listing sums the lines' lengths (ListGroupsCall). The stats field `group_extra:<rank>` is (jobs in group lines) − (tokens in
/// the pending list), so LLEN + group_extra is the priority's pending count.
enum GroupLua {
    static let turns = LuaPiece("group_turns", #"""
-- Ranks as text: Lua turns a number into text with printf("%.14g"), about
-- 1.5k instructions each time.
local RANK_TEXT = {'1', '2', '3', '4'}

local function group_line(q, name, rank)
  return string.sub(q.job_prefix, 1, -5) .. 'group:' .. name .. ':' .. RANK_TEXT[rank]
end

local function groups_hash(q)
  if not q.groups_key then q.groups_key = string.sub(q.job_prefix, 1, -5) .. 'groups' end
  return q.groups_key
end

local function is_group_token(entry)
  return string.byte(entry, 1) == 64
end

local function add_group_extra(q, rank, n)
  if n ~= 0 then redis.call('HINCRBY', q.stats, 'group_extra:' .. RANK_TEXT[rank], n) end
end

-- One of the group's lines got its first job, or lost its last one. (A
-- field left from a version that counted jobs may stay above 0 with no line
-- left: the listing skips groups with no job.)
local function group_line_opened(q, name)
  redis.call('HINCRBY', groups_hash(q), name, '1')
end

local function group_line_emptied(q, name)
  if redis.call('HINCRBY', groups_hash(q), name, '-1') <= 0 then redis.call('HDEL', groups_hash(q), name) end
end

-- Adds a job at the back of its group's line; a group with none waiting
-- gets its turn token at the back of the pending list.
local function group_push(q, name, rank, id)
  if redis.call('RPUSH', group_line(q, name, rank), id) == 1 then
    redis.call('RPUSH', q.pending[rank], '@' .. name)
    group_line_opened(q, name)
  else
    add_group_extra(q, rank, '1')
  end
end

-- A job queued again when it comes due (scheduled, retried from dead): at the
-- back of its group's line, in turn, or of its priority's pending list.
local function push_queued(q, id, rank, group)
  if group then group_push(q, group, rank, id) else redis.call('RPUSH', q.pending[rank], id) end
end

-- A fetch's turns change group_extra once per call (flush_group_turns), not
-- once per turn: an HINCRBY per turn on the queue's stats hash cost about 4k
-- instructions per job, 10% of what groups add to a plain job (make bench-ir).
local function note_group_extra(q, rank, n)
  if not q.group_extra_later then q.group_extra_later = {0, 0, 0, 0} end
  q.group_extra_later[rank] = q.group_extra_later[rank] + n
end

local function flush_group_turns(q)
  local later = q.group_extra_later
  if not later then return end
  for rank = 1, 4 do add_group_extra(q, rank, later[rank]) end
  q.group_extra_later = nil
end

-- A group's turn (its token was popped from pending list `rank`): its oldest
-- job, or nil when its line is empty (its jobs were cancelled). The caller
-- then calls flush_group_turns.
local function group_turn(q, token, rank)
  local name = string.sub(token, 2)
  local line = group_line(q, name, rank)
  local id = redis.call('LPOP', line)
  if not id then
    note_group_extra(q, rank, 1)
    return nil
  end
  if redis.call('EXISTS', line) == 1 then
    redis.call('RPUSH', q.pending[rank], token)
    note_group_extra(q, rank, -1)
  else
    group_line_emptied(q, name)
  end
  return id
end

-- Removes a waiting job from its group's line (cancel); false when it is not
-- there. The group's last job takes its turn token with it (O(list), like
-- any cancel of a queued job), so that no empty turn is left behind.
local function group_remove(q, name, rank, id)
  local line = group_line(q, name, rank)
  if redis.call('LREM', line, 1, id) == 0 then return false end
  if redis.call('EXISTS', line) == 1 then
    add_group_extra(q, rank, '-1')
  else
    group_line_emptied(q, name)
    if redis.call('LREM', q.pending[rank], 1, '@' .. name) == 0 then add_group_extra(q, rank, '-1') end
  end
  return true
end

-- Pending jobs at each priority: list entries, with group lines counted in.
local function pending_counts(q)
  local extra = redis.call('HMGET', q.stats, 'group_extra:1', 'group_extra:2', 'group_extra:3', 'group_extra:4')
  local out = {}
  for p = 1, 4 do out[p] = redis.call('LLEN', q.pending[p]) + (tonumber(extra[p]) or 0) end
  return out
end
"""#)
}
