import XCTest
@testable import Shared

/// Queue-wide scripts: the registry check, deleting a queue, throughput.
final class QueueScriptTests: ScriptTestCase {
    func testDeleteQueueRefusesJobsUnlessPurged() throws {
        for i in 0..<3 { try enqueue(idempotencyKey: "k\(i)") }
        try enqueue(delayMs: 60_000)
        _ = try fetch()
        let refused = try redis.run(DeleteQueueCall(schema: schema, queue: "q", purgeBatch: 0))
        XCTAssertEqual(refused, .notEmpty(pending: 2, scheduled: 1, running: 1, dead: 0))
        XCTAssertEqual(try redis.run(DeleteQueueCall(schema: schema, queue: "q", purgeBatch: 3)), .purged(3))
        XCTAssertEqual(try redis.run(DeleteQueueCall(schema: schema, queue: "q", purgeBatch: 3)), .purged(1))
        XCTAssertEqual(try redis.run(DeleteQueueCall(schema: schema, queue: "q", purgeBatch: 3)), .deleted)
        let left = try redis.command(["KEYS", "t:{q}*"]).array ?? []
        XCTAssertEqual(left, [], "every key of the queue is gone (idempotency keys too)")
    }

    func testCheckQueueCountsKnownQueues() throws {
        XCTAssertEqual(try redis.run(CheckQueueCall(schema: schema, queue: "a")), .new(count: 0))
        try redis.command(["SADD", schema.queues, "a", "b"])
        XCTAssertEqual(try redis.run(CheckQueueCall(schema: schema, queue: "a")), .known)
        XCTAssertEqual(try redis.run(CheckQueueCall(schema: schema, queue: "c")), .new(count: 2))
    }

    func testThroughputCountsThisMinute() throws {
        let job = try created(try enqueue())
        _ = try fetch()
        _ = try redis.run(CompleteCall(schema: schema, jobID: job.id, workerID: "w1", attempt: 1, resultJSON: "null"))
        _ = try makeDead(1)
        let minutes = try redis.run(ThroughputCall(schema: schema, queue: "q"))
        XCTAssertEqual(minutes.count, 60)
        XCTAssertEqual(minutes.last?.processed, 1)
        XCTAssertEqual(minutes.last?.failed, 1)
        XCTAssertEqual(minutes.dropLast().reduce(0) { $0 + $1.processed }, 0)
    }
}
