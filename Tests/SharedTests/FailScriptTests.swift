import XCTest
@testable import Shared

/// The fail script: retries with backoff, burial when out of attempts, the dead set's cap.
final class FailScriptTests: ScriptTestCase {
    func testFailRetriesThenBuriesWhenOutOfAttempts() throws {
        let job = try created(try enqueue(maxAttempts: 2))
        _ = try fetch()
        let first = try redis.run(FailCall(schema: schema, jobID: job.id, workerID: "w1", attempt: 1,
                                           errorJSON: Job.errorJSON(message: "e1", attempt: 1), retryDelayMs: 0,
                                           deadTTLSeconds: 60, deadMax: 10))
        XCTAssertEqual(first, .retry)
        XCTAssertEqual(try state(job.id), "scheduled")
        // The retry is due at once: fetch promotes it and runs it again.
        let again = try XCTUnwrap(try fetch())
        XCTAssertEqual(again.attempts, 2)
        XCTAssertEqual(again.error, #"{"message":"e1","attempt":1}"#, "the last error is kept on retry")
        let second = try redis.run(FailCall(schema: schema, jobID: job.id, workerID: "w1", attempt: 2,
                                            errorJSON: Job.errorJSON(message: "e2", attempt: 2), retryDelayMs: 0,
                                            deadTTLSeconds: 60, deadMax: 10))
        XCTAssertEqual(second, .dead)
        XCTAssertEqual(try state(job.id), "dead")
        XCTAssertNotNil(try redis.command(["ZSCORE", schema.dead("q"), job.id.text]).string)
        let stats = try redis.run(QueueStatsCall(schema: schema, queue: "q"))
        XCTAssertEqual(stats.dead, 1)
        XCTAssertEqual(stats.failed, 2)
    }

    func testRetryWaitsForItsBackoff() throws {
        let job = try created(try enqueue())
        _ = try fetch()
        _ = try redis.run(FailCall(schema: schema, jobID: job.id, workerID: "w1", attempt: 1, errorJSON: "{}",
                                   retryDelayMs: 60_000, deadTTLSeconds: 60, deadMax: 10))
        guard case .empty(let due) = try redis.run(FetchCall(schema: schema, queue: "q", workerID: "w1", leaseMs: 1000)) else {
            return XCTFail("the retry must not run before its time")
        }
        XCTAssertNotNil(due)
        XCTAssertGreaterThan(due ?? 0, 55_000)
    }

    func testFinalFailureGoesStraightToDead() throws {
        let job = try created(try enqueue(maxAttempts: 5))
        _ = try fetch()
        let outcome = try redis.run(FailCall(schema: schema, jobID: job.id, workerID: "w1", attempt: 1, errorJSON: "{}",
                                             retryDelayMs: nil, deadTTLSeconds: 60, deadMax: 10))
        XCTAssertEqual(outcome, .dead)
    }

    func testDeadSetIsCappedOldestFirst() throws {
        var ids: [JobID] = []
        for _ in 0..<3 {
            let job = try created(try enqueue(maxAttempts: 1))
            ids.append(job.id)
            _ = try fetch()
            _ = try redis.run(FailCall(schema: schema, jobID: job.id, workerID: "w1", attempt: 1, errorJSON: "{}",
                                       retryDelayMs: 0, deadTTLSeconds: 60, deadMax: 2))
            try age(schema.dead("q"), ids.suffix(2), byMs: 10)
        }
        XCTAssertEqual(try redis.command(["ZCARD", schema.dead("q")]).int, 2)
        XCTAssertEqual(try redis.command(["EXISTS", schema.job(ids[0])]).int, 0, "the oldest dead job is dropped whole")
        XCTAssertEqual(try state(ids[2]), "dead")
    }
}
