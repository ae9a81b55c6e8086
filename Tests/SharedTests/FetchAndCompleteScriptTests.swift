import XCTest
@testable import Shared

/// The fetch and complete scripts: claiming, leasing, damaged and missing jobs, paused queues, recording a success.
final class FetchAndCompleteScriptTests: ScriptTestCase {
    func testEnqueueFetchComplete() throws {
        let job = try created(try enqueue("echo"))
        XCTAssertEqual(try state(job.id), "queued")
        XCTAssertEqual(try redis.command(["LLEN", schema.pending("q", .normal)]).int, 1)

        let fetched = try XCTUnwrap(try fetch())
        XCTAssertEqual(fetched.id, job.id)
        XCTAssertEqual(fetched.state, .running)
        XCTAssertEqual(fetched.attempts, 1)
        XCTAssertEqual(fetched.worker, "w1")
        XCTAssertNotNil(try redis.command(["ZSCORE", schema.lease("q"), job.id.text]).string)

        let stored = try redis.run(CompleteCall(schema: schema, jobID: job.id, workerID: "w1", attempt: 1, resultJSON: #"{"r":1}"#))
        XCTAssertTrue(stored)
        XCTAssertEqual(try state(job.id), "succeeded")
        XCTAssertEqual(try redis.command(["HGET", schema.job(job.id), "result"]).string, #"{"r":1}"#)
        XCTAssertEqual(try redis.command(["ZCARD", schema.lease("q")]).int, 0)
        XCTAssertGreaterThan(try redis.command(["TTL", schema.job(job.id)]).int ?? 0, 86_000, "result expires after its TTL")
        XCTAssertNil(try fetch(), "nothing left to run")
    }

    func testTheClaimedJobIsTheJobAsStoredAfterTheClaim() throws {
        let job = try created(try enqueue("echo"))
        let fetched = try XCTUnwrap(try fetch())
        let stored = try Job(id: job.id, hash: try redis.command(["HGETALL", schema.job(job.id)]).hash)
        XCTAssertEqual(fetched.json, stored.json, "the worker reads the claim's fields from the reply, not by working them out")
        XCTAssertNotNil(fetched.startedUs)
    }

    func testADamagedAttemptsCountIsReportedWithTheAttemptTheClaimCounted() throws {
        // Lua's tonumber would take the last three; the worker could not read them back.
        for bad in ["x", "1.5", "1e20", "12345678901234567890"] {
            let id = JobID.generate(queue: "q")
            try redis.command(["HSET", schema.job(id), "type", "noop", "state", "queued", "attempts", bad])
            try redis.command(["RPUSH", schema.pending("q", .normal), id.text])
            guard case .damaged(let damaged, let attempt, let error) = try redis.run(FetchCall(schema: schema, queue: "q", workerID: "w", leaseMs: 1000)) else {
                return XCTFail("expected a damaged job for attempts \(bad)")
            }
            XCTAssertEqual(damaged, id)
            XCTAssertEqual(attempt, 1)
            XCTAssertTrue(error.contains("attempts"), error)
            XCTAssertEqual(try redis.command(["HGET", schema.job(id), "attempts"]).string, "1", "leased as attempt 1, so the failure report holds the lease")
        }
    }

    func testDamagedHashIsHandedOutForFailing() throws {
        let id = JobID.generate(queue: "q")
        try redis.command(["HSET", schema.job(id), "payload", "{not json"])
        try redis.command(["RPUSH", schema.pending("q", .normal), id.text])
        guard case .damaged(let damaged, _, let error) = try redis.run(FetchCall(schema: schema, queue: "q", workerID: "w", leaseMs: 1000)) else {
            return XCTFail("a damaged job must be handed out, not dropped")
        }
        XCTAssertEqual(damaged, id)
        XCTAssertTrue(error.contains("'type'"), error)
    }

    func testPausedQueueHandsOutNothing() throws {
        try enqueue()
        try redis.command(["SET", schema.paused("q"), "1"])
        guard case .paused = try redis.run(FetchCall(schema: schema, queue: "q", workerID: "w", leaseMs: 1000)) else {
            return XCTFail("expected paused")
        }
        try redis.command(["DEL", schema.paused("q")])
        XCTAssertNotNil(try fetch())
    }

    func testIdsWithoutAJobHashAreDroppedAndCounted() throws {
        let gone = try created(try enqueue())
        let later = try created(try enqueue(delayMs: 1))
        let kept = try created(try enqueue())
        try redis.command(["DEL", schema.job(gone.id), schema.job(later.id)])
        try makeDue(later.id)
        XCTAssertEqual(try XCTUnwrap(try fetch()).id, kept.id)
        XCTAssertNil(try fetch())
        XCTAssertEqual(try redis.command(["HGET", schema.stats("q"), "missing"]).int, 2)
        XCTAssertEqual(try redis.command(["ZCARD", schema.scheduled("q")]).int, 0, "no id stays behind for a job that is gone")
        XCTAssertEqual(try redis.run(QueueStatsCall(schema: schema, queue: "q")).missing, 2)
    }

    func testACompletionSentAgainAfterALostReplyIsStoredOnce() throws {
        let job = try created(try enqueue())
        _ = try XCTUnwrap(try fetch())
        let report = CompleteCall(schema: schema, jobID: job.id, workerID: "w1", attempt: 1, resultJSON: "1")
        XCTAssertTrue(try redis.run(report))
        XCTAssertTrue(try redis.run(report), "the same report again finds its own success")
        XCTAssertEqual(try redis.command(["HGET", schema.stats("q"), "processed"]).int, 1, "counted once")
        XCTAssertFalse(try redis.run(CompleteCall(schema: schema, jobID: job.id, workerID: "w2", attempt: 1, resultJSON: "2")))
        XCTAssertFalse(try redis.run(CompleteCall(schema: schema, jobID: job.id, workerID: "w1", attempt: 2, resultJSON: "2")))
        XCTAssertEqual(try redis.command(["HGET", schema.job(job.id), "result"]).string, "1")
    }

    func testFinishedJobIsPublishedOnlyWhenSomeoneWaits() throws {
        let quiet = try created(try enqueue())
        let watched = try created(try enqueue())
        try redis.command(["SET", schema.waiting(watched.id), "1", "PX", "5000"])
        let listener = server.connection()
        XCTAssertEqual(try listener.command(["SUBSCRIBE", schema.finishedChannel]).array?.first?.string, "subscribe")
        for _ in 0..<2 {
            let job = try XCTUnwrap(try fetch())
            _ = try redis.run(CompleteCall(schema: schema, jobID: job.id, workerID: "w1", attempt: 1, resultJSON: "null"))
        }
        let message = try listener.blockingCommand(["PING"], blockingMs: 1000)
        XCTAssertEqual(message.array?.last?.string, watched.id.text, "the waited-for job is published, the other is not")
        _ = quiet
    }
}
