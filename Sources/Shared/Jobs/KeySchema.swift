/// Every Redis key Spool uses, in one place, and why each works on Redis Cluster.
///
/// The rule: a script touches one slot, and a command touches one slot.
/// - Keys of one queue share the hash tag `{queue}`, so each lives in its
///   queue's slot, and every queue script (which touches one queue only) runs
///   on the node serving that slot. Scripts declare all the queue's
///   structural keys in KEYS (QueueKeys) and build only keys of the same slot
///   from ARGV prefixes (job hashes, idempotency keys, receipts), so the
///   declared keys route the call and the built ones are on the same node.
///   While a queue's slot migrates, Redis answers TRYAGAIN to those scripts
///   (on a cluster the connections add the slot guard, a key that never
///   exists, to every script's keys, so never are all of them present on one
///   side) and the connections wait it out: no script runs on half a queue,
///   where a job hash it builds might already have moved.
/// - The registry keys (`queues`, `workers`, `worker:<id>`) have no hash tag:
///   each is read and written on its own, by single-key commands or the
///   one-key `check_queue` script, never together with another key. Each may
///   live on a different node; listings gather from each.
/// - The finished channel is classic pub/sub, which a cluster delivers to
///   subscribers on every node: the API subscribes on any one node. It carries
///   a message only for a job a client waits on (`waiting`), so broadcasting
///   costs little; sharded pub/sub would need a subscription per queue.
/// - A job's event log (`events:<id>`) and its queue's (`queue-events`) carry
///   the queue's hash tag too: the scripts that change a job's state append to
///   them in the same call, on the same node. They derive both names from the
///   job prefix they already get (`job:` → `events:`, see `event_keys` in
///   EventLogLua), so no script takes another argument for them.
/// - The events channel is classic pub/sub like the finished channel, for the
///   same reason; it carries a message only for a job whose log exists (some
///   client asked for its events, or its handler streams) or a queue whose log
///   a dashboard keeps alive, and one per script call, not per entry.
/// - A limit (`limit:{<name>}`, with `:holders`, `:starts`, `:waiting`) has
///   its own hash tag, not a queue's: one limit spans every queue whose jobs
///   name it, so its state cannot live in any one queue's slot. Its scripts
///   (acquire, release, extend, define, status) touch only the limit's keys,
///   one slot; a worker calls them between the queue scripts that claim and
///   record the job (LimitGate in the worker), never inside one on a
///   cluster. (On one Redis, where slots do not matter, the complete-and-fetch
///   call settles the limits it declares in its KEYS itself: CallLimits.) A job that
///   must wait is parked in its own queue's slot (`limited:<name>` and the
///   `limited` set), so parking and claiming stay queue scripts. The registry
///   of limit names (`limits`) has no tag, like `queues`.
/// - A worker cannot BLPOP the wake lists of several queues at once on a
///   cluster (several slots): it listens per queue (ClusterWakeBoard).
public struct KeySchema: Sendable {
    public let prefix: String

    public init(prefix: String = "spool") { self.prefix = prefix }

    /// `spool:{q}` — the common part of every key of queue `q`.
    public func queueBase(_ q: String) -> String { "\(prefix):{\(q)}" }

    /// HASH: one job's fields (see JobFields).
    public func job(_ id: JobID) -> String { jobPrefix(id.queue) + id.text }
    /// The part of a job key before its id; scripts append ids to it.
    public func jobPrefix(_ q: String) -> String { queueBase(q) + ":job:" }
    /// LIST: ids ready to run at one priority, oldest at the head.
    public func pending(_ q: String, _ p: Priority) -> String { queueBase(q) + ":pending:" + p.rawValue }
    /// ZSET: ids being run; score = lease deadline (ms).
    public func lease(_ q: String) -> String { queueBase(q) + ":lease" }
    /// ZSET: delayed jobs and retries; score = when to run (ms).
    public func scheduled(_ q: String) -> String { queueBase(q) + ":scheduled" }
    /// ZSET: jobs out of attempts; score = time of death (ms).
    public func dead(_ q: String) -> String { queueBase(q) + ":dead" }
    /// LIST: wake tokens that idle workers block on.
    public func wake(_ q: String) -> String { queueBase(q) + ":wake" }
    /// STRING: idempotency key → job id, with a TTL.
    public func idempotency(_ q: String, _ key: String) -> String { queueBase(q) + ":idem:" + key }
    /// The part of an idempotency key before the client's key.
    public func idempotencyPrefix(_ q: String) -> String { queueBase(q) + ":idem:" }
    /// HASH: counters (processed, failed, …).
    public func stats(_ q: String) -> String { queueBase(q) + ":stats" }
    /// STRING, short-lived: a client waits (`?wait=`) for this job, so the
    /// script that finishes it publishes its id on the finished channel.
    public func waitingPrefix(_ q: String) -> String { queueBase(q) + ":waiting:" }
    public func waiting(_ id: JobID) -> String { waitingPrefix(id.queue) + id.text }
    /// HASH per minute: processed and failed counts in that minute; expires
    /// after an hour. The key ends with the minute (epoch ms / 60000).
    public func throughputPrefix(_ q: String) -> String { queueBase(q) + ":throughput:" }
    /// Never written. On Redis Cluster the connections append it to the
    /// KEYS of every script call whose first key has a hash tag
    /// (ClusterSlot.withSlotGuard), so that a script always names a key that
    /// is absent: on a node whose slot is being migrated Redis runs a script
    /// only when all its declared keys are there, and with this one it never
    /// does; it answers TRYAGAIN until the move ends. Why: the scripts build
    /// job hash names from prefixes, which Redis cannot check for having
    /// moved. Appended last, so no script reads it, and only on a cluster, so
    /// one Redis pays nothing for it.
    public func slotGuard(_ q: String) -> String { queueBase(q) + ":slot-guard" }
    /// STRING: present while the queue is paused.
    public func paused(_ q: String) -> String { queueBase(q) + ":paused" }
    /// STRING, kept one lease: the receipt of the last call that claimed or
    /// completed jobs for one worker loop (`caller`): the call's token, the
    /// completions it stored and the jobs it claimed. A loop whose reply was
    /// lost reads it to learn whether the call ran (SettleCall).
    public func receipt(_ q: String, caller: String) -> String { queueBase(q) + ":receipt:" + caller }
    /// STREAM: one job's event log (state changes, progress, chunks, named
    /// events). Exists only once someone asked for the job's events or its
    /// handler streamed output; expires with the job. Scripts build it from
    /// the job prefix: `jobPrefix` without `job:`, then `events:`.
    public func events(_ id: JobID) -> String { eventsPrefix(id.queue) + id.text }
    public func eventsPrefix(_ q: String) -> String { queueBase(q) + ":events:" }
    /// STREAM, capped: the state changes of every job of the queue, written
    /// only while some `GET /v1/queues/{q}/events` keeps it alive (it expires
    /// otherwise, and the scripts then write nothing).
    public func queueEvents(_ q: String) -> String { queueBase(q) + ":queue-events" }
    /// LIST: ids of jobs of the queue that wait for limit `name` (their
    /// claim was refused by the limit), oldest at the head. Scripts build it
    /// from the job prefix: `jobPrefix` without `job:`, then `limited:`.
    public func limited(_ q: String, limit name: String) -> String { queueBase(q) + ":limited:" + name }
    /// SET: names of the limits that have jobs waiting in the queue (fetch
    /// replies carry it, so every worker learns where parked jobs are).
    public func limitedSet(_ q: String) -> String { queueBase(q) + ":limited" }
    /// LIST: the waiting jobs of one group (tenant) at one priority rank
    /// (1 urgent … 4 low), served in turn with the queue's other groups
    /// (GroupLua). Scripts build it from the job prefix.
    public func groupLine(_ q: String, group: String, rank: Int) -> String { queueBase(q) + ":group:\(group):\(rank)" }
    /// HASH: group → how many of its lines hold jobs (GroupLua; the groups
    /// listing sums the lines' lengths, ListGroupsCall).
    public func groups(_ q: String) -> String { queueBase(q) + ":groups" }
    /// HASH: a limit's definition (concurrency, rate_count, rate_period_ms,
    /// units_per_minute) and state (paused_until ms, units available and when
    /// last refilled, started count).
    public func limit(_ name: String) -> String { "\(prefix):limit:{\(name)}" }
    /// ZSET: ids of the jobs holding one of the limit's slots; score = when the
    /// hold expires (ms): a crashed worker's holds lapse with its leases.
    public func limitHolders(_ name: String) -> String { limit(name) + ":holders" }
    /// ZSET: the starts within the rate window (member id:attempt, score ms).
    public func limitStarts(_ name: String) -> String { limit(name) + ":starts" }
    /// SET: queues with jobs that a refusal of this limit parked; emptied (and
    /// each woken) when a slot frees.
    public func limitWaiting(_ name: String) -> String { limit(name) + ":waiting" }
    /// SET: the names of every defined limit.
    public var limits: String { "\(prefix):limits" }
    /// Pub/sub channel: a job id (its log has new entries) or a queue name
    /// (its queue log has). `finishedChannel` with `events` for `finished`.
    public var eventsChannel: String { "\(prefix):events" }
    /// Pub/sub channel: the id of every job that reaches a terminal state
    /// (API long-polls listen on it).
    public var finishedChannel: String { "\(prefix):finished" }
    /// SET: names of every queue that has seen a job.
    public var queues: String { "\(prefix):queues" }
    /// STRING, expires in seconds: written by each `GET /readyz`, a write that
    /// fails when Redis refuses writes (replica, out of memory, failed disk
    /// write, too few replicas) even though it still answers PING. One key on
    /// its own, so one slot on Redis Cluster.
    public var readinessProbe: String { "\(prefix):readiness-probe" }
    /// ZSET: live worker ids; score = last heartbeat (ms).
    public var workers: String { "\(prefix):workers" }
    /// HASH: one worker's description and counters; expires without heartbeats.
    public func worker(_ id: String) -> String { "\(prefix):worker:\(id)" }
}
