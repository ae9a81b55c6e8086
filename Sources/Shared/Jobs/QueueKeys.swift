/// The keys and key prefixes of one queue, in the order every queue script
/// takes them first (CommonLua.queueKeys reads them by name): one constructor
/// for all scripts, so no script lays out a queue differently.
///
/// KEYS: the four pending lists (urgent first), scheduled, lease, dead,
/// paused, wake, stats. ARGV: the job, idempotency, throughput and waiting key
/// prefixes and the finished channel. All keys share the queue's hash tag, so
/// a script that declares them (and only keys of its own queue after them)
/// touches one Cluster slot. The prefixes name keys of that same slot that a
/// script builds from a job id; the finished channel is pub/sub, not a key.
public struct QueueKeys: Sendable {
    public let queue: String
    /// KEYS[1...10] of every queue script.
    public let keys: [String]
    /// ARGV[1...5] of every queue script.
    public let args: [String]

    public init(schema: KeySchema, queue q: String) {
        queue = q
        keys = Priority.allCases.map { schema.pending(q, $0) }
            + [schema.scheduled(q), schema.lease(q), schema.dead(q), schema.paused(q), schema.wake(q), schema.stats(q)]
        args = [schema.jobPrefix(q), schema.idempotencyPrefix(q), schema.throughputPrefix(q), schema.waitingPrefix(q),
                schema.finishedChannel]
    }
}

extension KeySchema {
    public func queueKeys(_ q: String) -> QueueKeys { QueueKeys(schema: self, queue: q) }
}
