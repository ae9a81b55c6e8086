import XCTest
@testable import Shared

/// The cancel script, for queued, running and scheduled jobs.
final class CancelScriptTests: ScriptTestCase {
    func testCancelQueuedRemovesItFromPending() throws {
        let job = try created(try enqueue())
        XCTAssertEqual(try redis.run(CancelCall(schema: schema, jobID: job.id)), .cancelled(previous: "queued"))
        XCTAssertEqual(try redis.command(["LLEN", schema.pending("q", .normal)]).int, 0, "no longer counted as pending")
        XCTAssertEqual(try state(job.id), "cancelled")
        XCTAssertNil(try fetch())
        XCTAssertEqual(try redis.run(CancelCall(schema: schema, jobID: job.id)), .conflict(state: "cancelled"))
        XCTAssertEqual(try redis.run(CancelCall(schema: schema, jobID: JobID.generate(queue: "q"))), .missing)
    }

    func testCancelRunningDropsItsResultAndTellsTheWorker() throws {
        let job = try created(try enqueue())
        _ = try fetch()
        XCTAssertEqual(try redis.run(CancelCall(schema: schema, jobID: job.id)), .cancelled(previous: "running"))
        let lost = try redis.run(ExtendLeasesCall(schema: schema, queue: "q", workerID: "w1", leaseMs: 1000, jobs: [(job.id, 1)]))
        XCTAssertEqual(lost, [.init(id: job.id.text, state: "cancelled")])
        XCTAssertFalse(try redis.run(CompleteCall(schema: schema, jobID: job.id, workerID: "w1", attempt: 1, resultJSON: "1")))
        XCTAssertEqual(try state(job.id), "cancelled")
    }

    func testCancelScheduledNeverRuns() throws {
        let job = try created(try enqueue(delayMs: 50))
        XCTAssertEqual(try redis.run(CancelCall(schema: schema, jobID: job.id)), .cancelled(previous: "scheduled"))
        XCTAssertEqual(try redis.command(["ZCARD", schema.scheduled("q")]).int, 0, "nothing left to come due")
        XCTAssertNil(try fetch())
    }
}
