import XCTest
@testable import Shared

/// What every script test shares: a throwaway redis-server, a connection to it,
/// a key schema, and helpers that seed jobs and read their state. Each script
/// (or family) has its test file: `<Script>ScriptTests.swift`.
class ScriptTestCase: XCTestCase {
    var server: TestRedis!
    var redis: RedisConnection!
    let schema = KeySchema(prefix: "t")

    override func setUpWithError() throws {
        server = try TestRedis()
        redis = server.connection()
    }

    override func tearDown() {
        redis?.disconnect()
        server?.stop()
    }

    // MARK: helpers

    @discardableResult
    func enqueue(_ type: String = "noop", queue: String = "q", priority: Priority = .normal, maxAttempts: Int = 5,
                 delayMs: Int64 = 0, idempotencyKey: String? = nil, limit: Int64 = 0) throws -> EnqueueCall.Outcome {
        var job = Job(id: JobID.generate(queue: queue), type: type)
        job.priority = priority
        job.options.maxAttempts = maxAttempts
        job.idempotencyKey = idempotencyKey
        return try redis.run(EnqueueCall(schema: schema, queue: queue, items: [.init(job: job, delayMs: delayMs)], pendingLimit: limit))
    }

    func created(_ outcome: EnqueueCall.Outcome) throws -> Job {
        guard case .enqueued(let entries) = outcome, case .created(let job) = entries[0] else {
            XCTFail("expected a created job, got \(outcome)")
            throw XCTSkip("no job")
        }
        return job
    }

    func fetch(_ queue: String = "q", worker: String = "w1", leaseMs: Int64 = 30_000) throws -> Job? {
        if case .job(let job) = try redis.run(FetchCall(schema: schema, queue: queue, workerID: worker, leaseMs: leaseMs)) { return job }
        return nil
    }

    // MARK: time without sleeping: the scripts read Redis' clock, so a test
    // moves a job's time into the past instead of waiting for it to pass.

    /// A scheduled job's run time is now past.
    func makeDue(_ id: JobID) throws { try redis.command(["ZADD", schema.scheduled(id.queue), "XX", "0", id.text]) }

    /// A running job's lease ran out.
    func expireLease(_ id: JobID) throws { try redis.command(["ZADD", schema.lease(id.queue), "XX", "0", id.text]) }

    /// The jobs of a sorted set (dead, scheduled) are older by `ms`.
    func age(_ key: String, _ ids: [JobID], byMs ms: Int64) throws {
        for id in ids { try redis.command(["ZINCRBY", key, String(-ms), id.text]) }
    }

    func state(_ id: JobID) throws -> String? { try redis.command(["HGET", schema.job(id), "state"]).string }

    /// A fetch of loop 0 of worker w1, sent with `token`: the call a test
    /// "loses" by ignoring its reply, as a timed-out worker would.
    func loopFetch(_ token: String) -> FetchCall {
        var call = FetchCall(schema: schema, queue: "q", workerID: "w1", leaseMs: 30_000, loop: "0")
        call.token = token
        return call
    }

    func makeDead(_ count: Int) throws -> [JobID] {
        try (0..<count).map { _ in
            let job = try created(try enqueue(maxAttempts: 1))
            _ = try fetch()
            _ = try redis.run(FailCall(schema: schema, jobID: job.id, workerID: "w1", attempt: 1, errorJSON: "{}",
                                       retryDelayMs: 0, deadTTLSeconds: 600, deadMax: 100))
            return job.id
        }
    }
}
