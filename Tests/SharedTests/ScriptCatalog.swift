@testable import Shared

/// One call of every script Spool has, for tests that check them all (keys,
/// loading). A new script belongs here.
enum ScriptCatalog {
    static func calls(_ k: KeySchema, queue q: String) -> [any ScriptCall] {
        let id = JobID.generate(queue: q)
        var loopFetch = FetchCall(schema: k, queue: q, workerID: "w", leaseMs: 1000, loop: "0")
        loopFetch.token = "1"
        let complete = CompleteCall(schema: k, jobID: id, workerID: "w", attempt: 1, resultJSON: "null")
        return [
            EnqueueCall(schema: k, queue: q, items: [], pendingLimit: 0),
            FetchCall(schema: k, queue: q, workerID: "w", leaseMs: 1000),
            loopFetch,
            CompleteAndFetchCall(completions: [complete], fetch: loopFetch, claimLimit: 1),
            SettleCall(lost: loopFetch),
            complete,
            FailCall(schema: k, jobID: id, workerID: "w", attempt: 1, errorJSON: "{}", retryDelayMs: nil, deadTTLSeconds: 1, deadMax: 1),
            RecoverCall(schema: k, queue: q, deadTTLSeconds: 1, deadMax: 1),
            ExtendLeasesCall(schema: k, queue: q, workerID: "w", leaseMs: 1, jobs: []),
            GiveBackCall(schema: k, queue: q, workerID: "w", jobs: []),
            ProgressCall(schema: k, jobID: id, workerID: "w", attempt: 1, progressJSON: "{}"),
            CancelCall(schema: k, jobID: id),
            QueueStatsCall(schema: k, queue: q),
            ThroughputCall(schema: k, queue: q),
            ListGroupsCall(schema: k, queue: q, cursor: 0, count: 10),
            DeadListCall(schema: k, queue: q, cursor: .start, limit: 10),
            RetryDeadCall(schema: k, queue: q),
            PurgeDeadCall(schema: k, queue: q),
            DeleteQueueCall(schema: k, queue: q, purgeBatch: 0),
            CheckQueueCall(schema: k, queue: q),
            AppendEventsCall(schema: k, jobID: id, workerID: "w", attempt: 1, entries: [.init(kind: .chunk, data: "1")],
                             maxEvents: 10, maxBytes: 100),
            OpenEventsCall(schema: k, jobID: id),
            FollowQueueCall(schema: k, queue: q, ttlSeconds: 1),
            ParkCall(schema: k, jobID: id, workerID: "w", attempt: 1, limit: "l", atHead: false),
            DeferCall(schema: k, jobID: id, workerID: "w", attempt: 1, delayMs: 1, errorJSON: "{}"),
        ]
    }

    /// One call of every limit script: they touch only the limit's keys.
    static func limitCalls(_ k: KeySchema, limit l: String) -> [any ScriptCall] {
        let id = JobID.generate(queue: "q")
        return [
            AcquireLimitCall(schema: k, limit: l, holder: LimitHolder(id, attempt: 1), cost: 0, holdMs: 1),
            ReleaseLimitCall(schema: k, limit: l, holder: LimitHolder(id, attempt: 1)),
            ExtendLimitHoldsCall(schema: k, limit: l, holdMs: 1, holders: [LimitHolder(id, attempt: 1)]),
            DefineLimitCall(schema: k, limit: l, definition: LimitDefinition()),
            DeleteLimitCall(schema: k, limit: l),
            LimitStatusCall(schema: k, limit: l),
            LimitBatchCall(schema: k, limit: l, operations: [
                .acquire(LimitHolder(id, attempt: 1), cost: 1, holdMs: 1), .release(LimitHolder(id, attempt: 1), extraUnits: 0, pauseMs: 0)]),
        ]
    }
}
