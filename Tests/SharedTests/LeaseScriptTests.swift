import XCTest
@testable import Shared

/// Leases: recovery of expired ones, extension, giving jobs back, progress only while held.
final class LeaseScriptTests: ScriptTestCase {
    func testRecoverRequeuesExpiredLeaseAndDropsTheLateResult() throws {
        let job = try created(try enqueue())
        _ = try fetch(worker: "crashed")
        try expireLease(job.id)
        let recovered = try redis.run(RecoverCall(schema: schema, queue: "q", deadTTLSeconds: 60, deadMax: 10))
        XCTAssertEqual(recovered, [.init(id: job.id.text, dead: false, attempt: 1, worker: "crashed")])
        XCTAssertEqual(try state(job.id), "queued")
        XCTAssertEqual(try redis.run(RecoverCall(schema: schema, queue: "q", deadTTLSeconds: 60, deadMax: 10)), [], "idempotent")

        let rerun = try XCTUnwrap(try fetch(worker: "alive"))
        XCTAssertEqual(rerun.attempts, 2)
        // The frozen worker wakes up and reports: its result must be dropped.
        XCTAssertFalse(try redis.run(CompleteCall(schema: schema, jobID: job.id, workerID: "crashed", attempt: 1, resultJSON: "1")))
        XCTAssertEqual(try redis.run(FailCall(schema: schema, jobID: job.id, workerID: "crashed", attempt: 1, errorJSON: "{}",
                                              retryDelayMs: 0, deadTTLSeconds: 60, deadMax: 10)), .stale)
        XCTAssertTrue(try redis.run(CompleteCall(schema: schema, jobID: job.id, workerID: "alive", attempt: 2, resultJSON: "2")))
        XCTAssertEqual(try redis.command(["HGET", schema.job(job.id), "result"]).string, "2")
    }

    func testRecoverBuriesWhenOutOfAttempts() throws {
        let job = try created(try enqueue(maxAttempts: 1))
        _ = try fetch()
        try expireLease(job.id)
        let recovered = try redis.run(RecoverCall(schema: schema, queue: "q", deadTTLSeconds: 60, deadMax: 10))
        XCTAssertEqual(recovered.first?.dead, true)
        XCTAssertEqual(try state(job.id), "dead")
        let error = try JSONParser.parse(try redis.command(["HGET", schema.job(job.id), "error"]).string ?? "")
        XCTAssertTrue(error["message"]?.stringValue?.contains("lease expired") == true)
    }

    func testExtendLeasesReportsLostJobs() throws {
        let job = try created(try enqueue())
        _ = try fetch(leaseMs: 1000)
        let before = try redis.command(["ZSCORE", schema.lease("q"), job.id.text]).int ?? 0
        let lost = try redis.run(ExtendLeasesCall(schema: schema, queue: "q", workerID: "w1", leaseMs: 60_000,
                                                  jobs: [(job.id, 1), (JobID.generate(queue: "q"), 1)]))
        XCTAssertEqual(lost.count, 1, "the job it does not hold is reported lost")
        let after = try XCTUnwrap(Int64(try redis.command(["ZSCORE", schema.lease("q"), job.id.text]).string ?? ""))
        XCTAssertGreaterThan(after, before + 50_000)
        let wrongWorker = try redis.run(ExtendLeasesCall(schema: schema, queue: "q", workerID: "w2", leaseMs: 60_000, jobs: [(job.id, 1)]))
        XCTAssertEqual(wrongWorker, [.init(id: job.id.text, state: "running")])
    }

    func testGiveBackReturnsTheJobWithoutCountingTheAttempt() throws {
        let a = try created(try enqueue())
        let b = try created(try enqueue())
        _ = try fetch()
        let given = try redis.run(GiveBackCall(schema: schema, queue: "q", workerID: "w1", jobs: [(a.id, 1)]))
        XCTAssertEqual(given, [a.id.text])
        XCTAssertEqual(try state(a.id), "queued")
        XCTAssertEqual(try redis.command(["HGET", schema.job(a.id), "attempts"]).int, 0)
        XCTAssertEqual(try XCTUnwrap(try fetch()).id, a.id, "a given-back job runs next, ahead of older pending ones")
        XCTAssertEqual(try XCTUnwrap(try fetch()).id, b.id)
    }

    func testGivenBackJobsKeepTheirOrder() throws {
        let ids = try (0..<4).map { _ in try created(try enqueue()).id }
        let lost = loopFetch("1")
        _ = try redis.run(CompleteAndFetchCall(completions: [], fetch: lost, claimLimit: 3))
        XCTAssertEqual(try redis.run(SettleCall(lost: lost)), .ran(stored: [], givenBack: ids[0..<3].map(\.text)))
        XCTAssertEqual(try (0..<4).map { _ in try XCTUnwrap(try fetch()).id }, ids, "first in, first out still")
    }

    func testAJobQueuedAgainHasNoTraceOfTheLostRun() throws {
        let given = try created(try enqueue())
        let recovered = try created(try enqueue())
        _ = try fetch(worker: "w1")
        _ = try fetch(worker: "crashed")
        try expireLease(recovered.id)
        for id in [given.id, recovered.id] {
            try redis.command(["HSET", schema.job(id), "progress", #"{"current":1}"#])
        }
        XCTAssertEqual(try redis.run(GiveBackCall(schema: schema, queue: "q", workerID: "w1", jobs: [(given.id, 1)])), [given.id.text])
        XCTAssertEqual(try redis.run(RecoverCall(schema: schema, queue: "q", deadTTLSeconds: 60, deadMax: 10)).map(\.id), [recovered.id.text])
        for id in [given.id, recovered.id] {
            let fields = try redis.command(["HMGET", schema.job(id), "state", "started_at", "worker", "progress"]).array ?? []
            XCTAssertEqual(fields, [.bulk("queued"), .null, .null, .null], "\(id)")
        }
    }

    func testProgressOnlyWhileHoldingTheLease() throws {
        let job = try created(try enqueue())
        _ = try fetch()
        XCTAssertTrue(try redis.run(ProgressCall(schema: schema, jobID: job.id, workerID: "w1", attempt: 1, progressJSON: #"{"current":1}"#)))
        XCTAssertEqual(try redis.command(["HGET", schema.job(job.id), "progress"]).string, #"{"current":1}"#)
        XCTAssertFalse(try redis.run(ProgressCall(schema: schema, jobID: job.id, workerID: "other", attempt: 1, progressJSON: "{}")))
    }
}
