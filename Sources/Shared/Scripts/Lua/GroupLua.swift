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
/// Counts: the `groups` hash holds each group's waiting jobs (the listing);
/// the stats field `group_extra:<rank>` is (jobs in group lines) − (tokens in
/// the pending list), so LLEN + group_extra is the priority's pending count.
enum GroupLua {
    static let turns = LuaPiece("group_turns", #"""
local function group_line(q, name, rank)
  return string.sub(q.job_prefix, 1, -5) .. 'group:' .. name .. ':' .. rank
end

local function groups_hash(q)
  return string.sub(q.job_prefix, 1, -5) .. 'groups'
end

local function is_group_token(entry)
  return string.byte(entry, 1) == 64
end

local function count_group_jobs(q, name, rank, n, extra)
  if redis.call('HINCRBY', groups_hash(q), name, n) <= 0 then redis.call('HDEL', groups_hash(q), name) end
  if extra ~= 0 then redis.call('HINCRBY', q.stats, 'group_extra:' .. rank, extra) end
end

-- Adds a job at the back of its group's line; a group with none waiting
-- gets its turn token at the back of the pending list.
local function group_push(q, name, rank, id)
  if redis.call('RPUSH', group_line(q, name, rank), id) == 1 then
    redis.call('RPUSH', q.pending[rank], '@' .. name)
    count_group_jobs(q, name, rank, 1, 0)
  else
    count_group_jobs(q, name, rank, 1, 1)
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
  for rank = 1, 4 do
    if later[rank] ~= 0 then redis.call('HINCRBY', q.stats, 'group_extra:' .. rank, later[rank]) end
  end
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
  end
  count_group_jobs(q, name, rank, -1, 0)
  return id
end

-- Removes a waiting job from its group's line (cancel); false when it is not
-- there. The group's last job takes its turn token with it (O(list), like
-- any cancel of a queued job), so that no empty turn is left behind.
local function group_remove(q, name, rank, id)
  local line = group_line(q, name, rank)
  if redis.call('LREM', line, 1, id) == 0 then return false end
  local extra = -1
  if redis.call('EXISTS', line) == 0 and redis.call('LREM', q.pending[rank], 1, '@' .. name) == 1 then extra = 0 end
  count_group_jobs(q, name, rank, -1, extra)
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
