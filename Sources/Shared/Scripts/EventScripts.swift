/// A batch of a running job's streamed output (chunks and named events, as
/// its handler wrote them on fd 3), appended to the job's event log if the
/// worker still holds the job. The log keeps its first entries: past the caps
/// the rest of the output is dropped, and one `dropped` entry says so.
public struct AppendEventsCall: ScriptCall {
    public static let script = LuaScript(name: "append_events", uses: [CommonLua.queueKeys, CommonLua.lease, EventLogLua.lifecycle],
                                         body: #"""
-- KEYS[1..10], ARGV[1..5] the queue's keys (QueueKeys)
-- KEYS[11]  job hash
-- ARGV[6]   job id
-- ARGV[7]   worker id
-- ARGV[8]   attempt
-- ARGV[9]   most entries in the log (SPOOL_EVENT_LOG_MAX_EVENTS)
-- ARGV[10]  most bytes of chunks and events in the log (SPOOL_EVENT_LOG_MAX_BYTES)
-- ARGV[11..] kind ('chunk' | 'event'), name ('' for a chunk), data: per entry
-- Output:  {appended, dropped}, or {-1, 0} when the lease was lost (nothing written)
local q = queue_keys()
local id, attempt = ARGV[6], ARGV[8]
if not holds_lease(q, id, ARGV[7], attempt) then return {-1, 0} end
open_log(q, id)
local key = q.events_prefix .. id
local max_count, max_bytes = tonumber(ARGV[9]), tonumber(ARGV[10])
local count = redis.call('XLEN', key)
local f = redis.call('HMGET', KEYS[11], 'ev_bytes', 'ev_dropped')
local bytes = tonumber(f[1]) or 0
-- Once anything was dropped, everything after it is: the log keeps its
-- start, with no gap before the `dropped` entry.
local full = (tonumber(f[2]) or 0) > 0
local added, appended, dropped = 0, 0, 0
for i = 11, #ARGV, 3 do
  local kind, name, data = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local size = #name + #data
  if full or count >= max_count or bytes + added + size > max_bytes then
    full = true
    dropped = dropped + 1
  else
    if kind == 'event' then
      redis.call('XADD', key, '*', 't', 'event', 'a', attempt, 'n', name, 'd', data)
    else
      redis.call('XADD', key, '*', 't', 'chunk', 'a', attempt, 'd', data)
    end
    count = count + 1
    added = added + size
    appended = appended + 1
  end
end
if added > 0 then redis.call('HINCRBY', KEYS[11], 'ev_bytes', added) end
if dropped > 0 and redis.call('HINCRBY', KEYS[11], 'ev_dropped', dropped) == dropped then
  -- The first drop: readers learn that output is missing from here on.
  redis.call('XADD', key, '*', 't', 'dropped', 'a', attempt,
             'd', 'the event log is full (' .. ARGV[9] .. ' entries or ' .. ARGV[10]
                  .. ' bytes): later chunks and events of this job are dropped')
end
redis.call('PUBLISH', q.events_channel, id)
return {appended, dropped}
"""#)

    /// One streamed line: a chunk (`name` empty) or a named event. `data` is
    /// compact JSON (one line).
    public struct Entry: Sendable, Equatable {
        public enum Kind: String, Sendable { case chunk, event }
        public let kind: Kind
        public let name: String
        public let data: String

        public init(kind: Kind, name: String = "", data: String) {
            self.kind = kind
            self.name = name
            self.data = data
        }
    }

    public enum Outcome: Equatable {
        case appended(Int, dropped: Int)
        /// The worker no longer holds the job: nothing was written.
        case leaseLost
    }

    public let jobID: JobID
    public let workerID: String
    public let attempt: Int
    public let entries: [Entry]
    public let maxEvents: Int
    public let maxBytes: Int
    let schema: KeySchema

    public init(schema: KeySchema, jobID: JobID, workerID: String, attempt: Int, entries: [Entry], maxEvents: Int, maxBytes: Int) {
        self.schema = schema
        self.jobID = jobID
        self.workerID = workerID
        self.attempt = attempt
        self.entries = entries
        self.maxEvents = maxEvents
        self.maxBytes = maxBytes
    }

    public var script: LuaScript { AppendEventsCall.script }
    public var keys: [String] { schema.queueKeys(jobID.queue).keys + [schema.job(jobID)] }
    public var args: [String] {
        var a = schema.queueKeys(jobID.queue).args + [jobID.text, workerID, String(attempt), String(maxEvents), String(maxBytes)]
        a.reserveCapacity(a.count + entries.count * 3)
        for e in entries {
            a += [e.kind.rawValue, e.name, FieldCipher.stored(e.data, job: jobID.text, field: JobEventField.data)]
        }
        return a
    }

    public func parse(_ reply: RedisReply) throws -> Outcome {
        guard let parts = reply.array, parts.count == 2, let n = parts[0].int, let dropped = parts[1].int else {
            throw unexpected(reply)
        }
        return n < 0 ? .leaseLost : .appended(Int(n), dropped: Int(dropped))
    }
}

/// Makes sure a job has an event log (started from its hash when it had
/// none), for a client about to read it. The job's state, or nil when there
/// is no such job.
public struct OpenEventsCall: ScriptCall {
    public static let script = LuaScript(name: "open_events", uses: [CommonLua.queueKeys, EventLogLua.lifecycle], body: #"""
-- KEYS[1..10], ARGV[1..5] the queue's keys (QueueKeys)
-- KEYS[11]  job hash
-- ARGV[6]   job id
-- Output:   the job's state, or false when there is no such job
return open_log(queue_keys(), ARGV[6]) or false
"""#)

    public let jobID: JobID
    let schema: KeySchema

    public init(schema: KeySchema, jobID: JobID) {
        self.schema = schema
        self.jobID = jobID
    }

    public var script: LuaScript { OpenEventsCall.script }
    public var keys: [String] { schema.queueKeys(jobID.queue).keys + [schema.job(jobID)] }
    public var args: [String] { schema.queueKeys(jobID.queue).args + [jobID.text] }

    public func parse(_ reply: RedisReply) throws -> JobState? {
        if case .null = reply { return nil }
        guard let text = reply.string, let state = JobState(rawValue: text) else { throw unexpected(reply) }
        return state
    }
}

/// Keeps a queue's log of state changes alive while a client follows it: it
/// is created (with one `follow` entry, which readers skip) when missing and
/// expires `ttl` seconds after the last call; the scripts write to it only
/// while it exists. Returns the ids of its oldest and newest entries (a new
/// follower starts after the newest; one resuming before the oldest missed some).
public struct FollowQueueCall: ScriptCall {
    public static let script = LuaScript(name: "follow_queue", uses: [CommonLua.queueKeys, EventLogLua.log], body: #"""
-- KEYS[1..10], ARGV[1..5] the queue's keys (QueueKeys)
-- ARGV[6]   seconds the log lives without another call
-- Output:   {id of the oldest entry, id of the newest}
local q = event_keys(queue_keys())
if redis.call('EXISTS', q.queue_events) == 0 then
  redis.call('XADD', q.queue_events, '*', 't', 'follow')
end
redis.call('EXPIRE', q.queue_events, tonumber(ARGV[6]))
local oldest = redis.call('XRANGE', q.queue_events, '-', '+', 'COUNT', 1)
local newest = redis.call('XREVRANGE', q.queue_events, '+', '-', 'COUNT', 1)
return {oldest[1][1], newest[1][1]}
"""#)

    public let queue: String
    public let ttlSeconds: Int
    let schema: KeySchema

    public init(schema: KeySchema, queue: String, ttlSeconds: Int) {
        self.schema = schema
        self.queue = queue
        self.ttlSeconds = ttlSeconds
    }

    public var script: LuaScript { FollowQueueCall.script }
    public var keys: [String] { schema.queueKeys(queue).keys }
    public var args: [String] { schema.queueKeys(queue).args + [String(ttlSeconds)] }

    public struct Span: Equatable {
        public let oldest: String
        public let newest: String
    }

    public func parse(_ reply: RedisReply) throws -> Span {
        guard let parts = reply.array, parts.count == 2, let oldest = parts[0].string, let newest = parts[1].string else {
            throw unexpected(reply)
        }
        return Span(oldest: oldest, newest: newest)
    }
}

/// The field names of a log entry (see EventLogLua).
public enum JobEventField {
    /// The field name sealed data is bound to (FieldCipher's associated data).
    public static let data = "event"
}
