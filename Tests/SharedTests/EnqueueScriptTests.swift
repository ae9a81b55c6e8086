import XCTest
@testable import Shared

/// The enqueue script: order, scheduling, idempotency, limits, batches, what is stored.
final class EnqueueScriptTests: ScriptTestCase {
    func testPrioritiesThenFIFO() throws {
        let low = try created(try enqueue(priority: .low))
        let normal1 = try created(try enqueue(priority: .normal))
        let normal2 = try created(try enqueue(priority: .normal))
        let urgent = try created(try enqueue(priority: .urgent))
        let high = try created(try enqueue(priority: .high))
        let order = try (0..<5).map { _ in try XCTUnwrap(try fetch()).id }
        XCTAssertEqual(order, [urgent.id, high.id, normal1.id, normal2.id, low.id])
    }

    func testDelayedJobIsScheduledThenPromoted() throws {
        let job = try created(try enqueue(delayMs: 150))
        XCTAssertEqual(job.state, .scheduled)
        XCTAssertEqual(try state(job.id), "scheduled")
        let runAt = try XCTUnwrap(job.runAtUs), created = try XCTUnwrap(job.createdUs)
        XCTAssertTrue((149_000...150_000).contains(runAt - created), "runs 150 ms after it was created: \(runAt - created) µs")
        XCTAssertEqual(try redis.command(["HGET", schema.job(job.id), "run_at"]).string, String(runAt), "the reply shows what was stored")
        XCTAssertNil(try fetch())
        try makeDue(job.id)
        XCTAssertEqual(try XCTUnwrap(try fetch()).id, job.id)
    }

    func testIdempotencyKeyReturnsTheFirstJob() throws {
        let first = try created(try enqueue(idempotencyKey: "order-1"))
        guard case .enqueued(let entries) = try enqueue(idempotencyKey: "order-1"), case .existing(let again) = entries[0] else {
            return XCTFail("the second enqueue must return the existing job")
        }
        XCTAssertEqual(again.id, first.id)
        XCTAssertEqual(try redis.command(["LLEN", schema.pending("q", .normal)]).int, 1)
    }

    func testPendingLimitRefusesWholeBatch() throws {
        try enqueue(limit: 2)
        try enqueue(limit: 2)
        guard case .queueFull(let pending) = try enqueue(limit: 2) else { return XCTFail("expected queue full") }
        XCTAssertEqual(pending, 2)
        XCTAssertEqual(try redis.command(["LLEN", schema.pending("q", .normal)]).int, 2, "nothing stored")
    }

    func testBatchIsStoredInOrder() throws {
        let items = (0..<100).map { i -> EnqueueCall.Item in
            var job = Job(id: JobID.generate(queue: "q"), type: "t\(i)")
            job.payload = "\(i)"
            return .init(job: job)
        }
        guard case .enqueued(let entries) = try redis.run(EnqueueCall(schema: schema, queue: "q", items: items, pendingLimit: 0)) else {
            return XCTFail()
        }
        XCTAssertEqual(entries.count, 100)
        for i in 0..<100 { XCTAssertEqual(try XCTUnwrap(try fetch()).type, "t\(i)") }
    }

    func testAReusedIdempotencyKeyWithAnotherRequestStoresNothing() throws {
        var job = Job(id: JobID.generate(queue: "q"), type: "render")
        job.payload = #"{"n":1}"#
        job.idempotencyKey = "k"
        let first = try redis.run(EnqueueCall(schema: schema, queue: "q", items: [.init(job: job)], pendingLimit: 0))
        guard case .enqueued = first else { return XCTFail("\(first)") }
        let before = try redis.command(["DBSIZE"]).int
        var other = Job(id: JobID.generate(queue: "q"), type: "render")
        other.payload = #"{"n":2}"#
        other.idempotencyKey = "k"
        let fresh = Job(id: JobID.generate(queue: "q"), type: "noop")
        let outcome = try redis.run(EnqueueCall(schema: schema, queue: "q", items: [.init(job: fresh), .init(job: other)], pendingLimit: 0))
        XCTAssertEqual("\(outcome)", "\(EnqueueCall.Outcome.idempotencyConflict(index: 1, existing: job.id.text))")
        XCTAssertEqual(try redis.command(["DBSIZE"]).int, before, "nothing stored, not even the batch's other job")
        XCTAssertEqual(try redis.command(["LLEN", schema.pending("q", .normal)]).int, 1)
    }

    func testDefaultOptionsAreNotStored() throws {
        let job = try created(try enqueue())
        let fields = try redis.command(["HKEYS", schema.job(job.id)]).array?.compactMap(\.string) ?? []
        for omitted in ["max_attempts", "timeout_ms", "backoff_ms", "result_ttl_s", "attempts"] {
            XCTAssertFalse(fields.contains(omitted), omitted)
        }
        let fetched = try XCTUnwrap(try fetch())
        XCTAssertEqual(fetched.options, JobOptions(), "readers fall back to the defaults")
    }

    func testTimestampsAreMicrosecondsOnRedisClock() throws {
        let job = try created(try enqueue())
        let fetched = try XCTUnwrap(try fetch())
        let created = try XCTUnwrap(job.createdUs)
        let started = try XCTUnwrap(fetched.startedUs)
        XCTAssertGreaterThanOrEqual(started, created)
        XCTAssertLessThan(started - created, 5_000_000)
        XCTAssertGreaterThan(created, 1_600_000_000_000_000, "microseconds since the epoch")
    }

    func testScriptsReloadAfterFlush() throws {
        try enqueue()
        try redis.command(["SCRIPT", "FLUSH"])
        XCTAssertNotNil(try fetch(), "NOSCRIPT falls back to EVAL")
    }
}
