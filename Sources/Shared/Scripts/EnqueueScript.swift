/// Enqueues a batch of jobs (one or many) into one queue, all or none.
public struct EnqueueCall: ScriptCall {
    public static let script = LuaScript(name: "enqueue", uses: [CommonLua.clock, CommonLua.queueKeys, CommonLua.wake,
                                                                 CommonLua.finishing, EventLogLua.log, GroupLua.turns],
                                         body: #"""
-- KEYS[1..10], ARGV[1..5] the queue's keys (QueueKeys)
-- ARGV[6]    pending limit for the queue (0 = none)
-- ARGV[7]    the client's max_pending (0 = none): its unfinished jobs in this queue at
--            most (a call with a limit carries one client's jobs)
-- ARGV[8]    number of jobs n, then per job:
--            id, priority (1-4), run_at ms (0 = none), delay ms, idempotency key ('' = none),
--            type, payload, count m of other fields, then m strings: field, value, ...
--            (type and payload by position: field names sent for every job of
--            a batch were a tenth of the script's cost)
-- Output:    {'full', pending}           when the jobs would cross the pending limit (nothing stored)
--            {'client_full', unfinished} when they would cross the client's max_pending (nothing stored)
--            {'conflict', j, existing id} when job j reuses an idempotency key for a
--                                        different request (nothing stored)
--            {now µs, entry1, ..., entryN}  otherwise; entry = 'new' (queued), the run time in
--                                        ms (scheduled), or for an idempotency hit
--                                        {existing id, HGETALL of the existing job}
local now, now_us, now_us_text = clock()
local q = queue_keys()
local limit = tonumber(ARGV[6])
local job_prefix, idem_prefix = q.job_prefix, q.idem_prefix
local client_limit = tonumber(ARGV[7])
local n = tonumber(ARGV[8])

-- What makes two enqueues with one idempotency key the same request: the
-- stored fields (options at their default are not stored, on either side).
local SAME_REQUEST = {'type', 'payload', 'priority', 'max_attempts', 'timeout_ms', 'backoff_ms', 'result_ttl_s',
                      'limit', 'cost', 'group'}
-- Encrypted payloads differ every time they are sealed: then the first
-- job's payload digest (pmac) must be among the new request's (pmacs: one
-- per key of the key file, so a key rotation changes nothing).
local function request_fields(job)
  local f = {type = job.type, payload = job.payload}
  for k = job.first, job.first + job.m - 1, 2 do f[ARGV[k]] = ARGV[k + 1] end
  return f
end
local function same_request(first, new)
  for _, name in ipairs(SAME_REQUEST) do
    if name == 'payload' and first.pmac and new.pmacs then
      if not string.find(',' .. new.pmacs .. ',', ',' .. first.pmac .. ',', 1, true) then return false end
    elseif first[name] ~= new[name] then
      return false
    end
  end
  return true
end

-- First pass: parse, resolve idempotency hits, count what would become pending.
local jobs, seen, immediate, i = {}, {}, 0, 9
local new_per_client, limited_client = {}, nil
for j = 1, n do
  local job = { id = ARGV[i], prio = tonumber(ARGV[i + 1]), run_at = tonumber(ARGV[i + 2]),
                delay = tonumber(ARGV[i + 3]), idem = ARGV[i + 4], type = ARGV[i + 5], payload = ARGV[i + 6],
                m = tonumber(ARGV[i + 7]), first = i + 8 }
  i = job.first + job.m
  if job.idem ~= '' then
    local earlier = seen[job.idem]
    if earlier then
      if not same_request(request_fields(earlier), request_fields(job)) then return {'conflict', j, earlier.id} end
      job.dup = earlier.id
    else
      local existing = redis.call('GET', idem_prefix .. job.idem)
      if existing then
        local stored = redis.call('HMGET', job_prefix .. existing, 'pmac', unpack(SAME_REQUEST))
        if stored[2] then
          local fields = {pmac = stored[1] or nil}
          for k, name in ipairs(SAME_REQUEST) do fields[name] = stored[k + 1] or nil end
          if not same_request(fields, request_fields(job)) then return {'conflict', j, existing} end
          job.dup = existing
        end
      end
    end
    if not job.dup then seen[job.idem] = job end
  end
  if job.run_at > 0 then job.at = job.run_at elseif job.delay > 0 then job.at = now + job.delay end
  if job.at and job.at <= now then job.at = nil end
  if not job.dup and not job.at then immediate = immediate + 1 end
  if not job.dup then
    -- The owner, among the other fields (only jobs enqueued with a token have one).
    for k = job.first, job.first + job.m - 1, 2 do
      if ARGV[k] == 'client' then job.client = ARGV[k + 1] elseif ARGV[k] == 'group' then job.group = ARGV[k + 1] end
    end
    if job.client then
      new_per_client[job.client] = (new_per_client[job.client] or 0) + 1
      limited_client = job.client
    end
  end
  jobs[j] = job
end

if client_limit > 0 and limited_client then
  local unfinished = tonumber(redis.call('HGET', q.stats, 'client:' .. limited_client)) or 0
  if unfinished + new_per_client[limited_client] > client_limit then return {'client_full', unfinished} end
end

if limit > 0 and immediate > 0 then
  local pending = 0
  for _, count in ipairs(pending_counts(q)) do pending = pending + count end
  if pending + immediate > limit then return {'full', pending} end
end

-- Second pass: store. One HSET per job; ids are pushed with one RPUSH per
-- priority and the wake tokens with one LPUSH, so a batch of 1,000 costs about
-- 1,000 commands instead of 4,000.
local out = {now_us}
local ready = {{}, {}, {}, {}}
local scheduled_any = false
for j = 1, n do
  local job = jobs[j]
  if job.dup then
    local existing = job.dup
    out[j + 1] = {existing, redis.call('HGETALL', job_prefix .. existing)}
  else
    local fields = {job_prefix .. job.id, 'created_at', now_us_text, 'type', job.type, 'payload', job.payload,
                    'state', 'queued'}
    if job.at then
      fields[9], fields[10], fields[11] = 'scheduled', 'run_at', job.at * 1000
      redis.call('ZADD', q.scheduled, job.at, job.id)
      scheduled_any = true
      out[j + 1] = job.at
    elseif job.group then
      -- Pushed after the HSET below: a job is in a line only once it exists.
      job.to_group = true
    else
      local list = ready[job.prio]
      list[#list + 1] = job.id
    end
    for k = job.first, job.first + job.m - 1, 2 do
      if ARGV[k] ~= 'pmacs' then
        fields[#fields + 1] = ARGV[k]
        fields[#fields + 1] = ARGV[k + 1]
      end
    end
    redis.call('HSET', unpack(fields))
    if job.to_group then group_push(q, job.group, job.prio, job.id) end
    -- A new job has no log of its own yet; its queue's, while followed, learns of it.
    log_queue_state(event_keys(q), job.id, job.at and 'scheduled' or 'queued', 0)
    if job.idem ~= '' then redis.call('SET', idem_prefix .. job.idem, job.id) end
    out[j + 1] = out[j + 1] or 'new'
  end
end
for p = 1, 4 do
  if #ready[p] > 0 then redis.call('RPUSH', q.pending[p], unpack(ready[p])) end
end
for client, count in pairs(new_per_client) do count_client_jobs(q, client, count) end
-- Immediate jobs wake a worker each; a scheduled job wakes one, so that an
-- idle worker shortens its wait to the new earliest run time.
local wakes = immediate
if wakes == 0 and scheduled_any then wakes = 1 end
wake(q.wake, wakes)
return out
"""#)

    /// One job to enqueue. `runAt` (epoch ms) and `delayMs` are mutually exclusive.
    public struct Item {
        public var job: Job
        public var delayMs: Int64 = 0
        public var runAt: Int64 = 0
        public init(job: Job, delayMs: Int64 = 0, runAt: Int64 = 0) {
            self.job = job
            self.delayMs = delayMs
            self.runAt = runAt
        }
    }

    public enum Outcome {
        /// Nothing stored: the queue holds `pending` jobs, at or over its limit.
        case queueFull(pending: Int64)
        /// Nothing stored: the client has `unfinished` jobs in the queue, and
        /// these would take it past its max_pending.
        case clientFull(unfinished: Int64)
        /// Nothing stored: item `index` (from 0) reuses an idempotency key that
        /// job `existing` was enqueued with by a different request.
        case idempotencyConflict(index: Int, existing: String)
        /// One entry per item, in order: the stored job or, for an idempotency
        /// hit, the job that was already there.
        case enqueued([Entry])
    }

    public enum Entry {
        case created(Job)
        case existing(Job)

        public var job: Job {
            switch self {
            case .created(let j), .existing(let j): return j
            }
        }
    }

    public var queue: String { queueKeys.queue }
    public let items: [Item]
    public let pendingLimit: Int64
    /// The max_pending of the client whose jobs these are (0: none).
    public let clientLimit: Int64
    let queueKeys: QueueKeys

    public init(queue: QueueKeys, items: [Item], pendingLimit: Int64, clientLimit: Int64 = 0) {
        self.queueKeys = queue
        self.items = items
        self.pendingLimit = pendingLimit
        self.clientLimit = clientLimit
    }

    public init(schema: KeySchema, queue: String, items: [Item], pendingLimit: Int64, clientLimit: Int64 = 0) {
        self.init(queue: schema.queueKeys(queue), items: items, pendingLimit: pendingLimit, clientLimit: clientLimit)
    }

    public var script: LuaScript { EnqueueCall.script }
    public var keys: [String] { queueKeys.keys }
    public var args: [String] {
        var a = queueKeys.args + [String(pendingLimit), String(clientLimit), String(items.count)]
        a.reserveCapacity(a.count + items.count * 26)
        for item in items {
            let fields = item.job.optionalFields
            a += [item.job.id.text, String(item.job.priority.index), String(item.runAt), String(item.delayMs),
                  item.job.idempotencySlot ?? "", item.job.type,
                  FieldCipher.stored(item.job.payload, job: item.job.id.text, field: JobField.payload), String(fields.count)]
            a += fields
        }
        return a
    }

    public func parse(_ reply: RedisReply) throws -> Outcome {
        guard let parts = reply.array, let head = parts.first else { throw unexpected(reply) }
        if head.string == "full" { return .queueFull(pending: parts.count > 1 ? parts[1].int ?? 0 : 0) }
        if head.string == "client_full" { return .clientFull(unfinished: parts.count > 1 ? parts[1].int ?? 0 : 0) }
        if head.string == "conflict" {
            guard parts.count == 3, let j = parts[1].int, let existing = parts[2].string else { throw unexpected(reply) }
            return .idempotencyConflict(index: Int(j) - 1, existing: existing)
        }
        guard let nowUs = head.int, parts.count == items.count + 1 else { throw unexpected(reply) }
        var entries: [Entry] = []
        entries.reserveCapacity(items.count)
        for (item, part) in zip(items, parts.dropFirst()) {
            if part.string == "new" {
                var job = item.job
                job.createdUs = nowUs
                entries.append(.created(job))
            } else if let runAtMs = part.int {
                // The script scheduled it, for this time.
                var job = item.job
                job.createdUs = nowUs
                job.state = .scheduled
                job.runAtUs = runAtMs * 1000
                entries.append(.created(job))
            } else if let pair = part.array, pair.count == 2, let idText = pair[0].string, let id = JobID(parsing: idText) {
                entries.append(.existing(try Job(id: id, hash: pair[1].hash)))
            } else {
                throw unexpected(reply)
            }
        }
        return .enqueued(entries)
    }
}
