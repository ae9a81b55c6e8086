import XCTest
@testable import Shared

/// The complete-and-fetch script: several successes recorded and as many next jobs claimed in one call.
final class CompleteAndFetchScriptTests: ScriptTestCase {
    func testCompleteAndFetchStoresTheResultAndClaimsTheNext() throws {
        let first = try created(try enqueue())
        let second = try created(try enqueue())
        let running = try XCTUnwrap(try fetch())
        XCTAssertEqual(running.id, first.id)
        let call = CompleteAndFetchCall(
            complete: CompleteCall(schema: schema, jobID: first.id, workerID: "w1", attempt: 1, resultJSON: "42"),
            fetch: FetchCall(schema: schema, queue: "q", workerID: "w1", leaseMs: 30_000))
        let out = try redis.run(call)
        XCTAssertEqual(out.stored, [true])
        XCTAssertEqual(try state(first.id), "succeeded")
        guard out.claimed.count == 1, case .job(let job) = out.claimed[0] else { return XCTFail("the next job must be claimed") }
        XCTAssertEqual(job.id, second.id)
        XCTAssertEqual(job.state, .running)
        XCTAssertEqual(job.attempts, 1)
        XCTAssertEqual(try state(second.id), "running")
        // The same report sent again (its reply was lost) is known as stored,
        // changes nothing and is not counted twice.
        let again = try redis.run(CompleteAndFetchCall(completions: [call.completions[0]],
                                                       fetch: FetchCall(schema: schema, queue: "q", workerID: "w1", leaseMs: 30_000),
                                                       claimLimit: 0))
        XCTAssertEqual(again.stored, [true])
        XCTAssertEqual(try redis.command(["HGET", schema.stats("q"), "processed"]).int, 1)
        // A stale completion (another worker's) stores nothing but still fetches (here: nothing left).
        let after = try redis.run(CompleteAndFetchCall(
            complete: CompleteCall(schema: schema, jobID: first.id, workerID: "w2", attempt: 1, resultJSON: "0"),
            fetch: FetchCall(schema: schema, queue: "q", workerID: "w2", leaseMs: 30_000)))
        XCTAssertEqual(after.stored, [false])
        guard after.claimed.count == 1, case .empty = after.claimed[0] else { return XCTFail("queue should be empty") }
        XCTAssertEqual(try redis.command(["HGET", schema.job(first.id), "result"]).string, "42")
    }

    func testCompleteAndFetchBatchesSeveralJobs() throws {
        var ids: [JobID] = []
        for _ in 0..<5 { ids.append(try created(try enqueue()).id) }
        let urgent = try created(try enqueue(priority: .urgent)).id
        let a = try XCTUnwrap(try fetch())
        let b = try XCTUnwrap(try fetch())
        XCTAssertEqual([a.id, b.id], [urgent, ids[0]], "urgent first")
        let processedBefore = try redis.command(["HGET", schema.stats("q"), "processed"]).int ?? 0
        let fetchCall = FetchCall(schema: schema, queue: "q", workerID: "w1", leaseMs: 30_000)
        let done = { (id: JobID, worker: String) in
            CompleteCall(schema: self.schema, jobID: id, workerID: worker, attempt: 1, resultJSON: "\"ok\"")
        }
        // Two real completions and a stale one (wrong attempt); claim three.
        let stale = CompleteCall(schema: schema, jobID: ids[4], workerID: "w1", attempt: 1, resultJSON: "0")
        let out = try redis.run(CompleteAndFetchCall(completions: [done(a.id, "w1"), stale, done(b.id, "w1")],
                                                     fetch: fetchCall, claimLimit: 3))
        XCTAssertEqual(out.stored, [true, false, true])
        XCTAssertEqual(try state(a.id), "succeeded")
        XCTAssertEqual(try state(b.id), "succeeded")
        XCTAssertEqual(try redis.command(["HGET", schema.stats("q"), "processed"]).int, processedBefore + 2)
        let claimed: [JobID] = out.claimed.compactMap { if case .job(let j) = $0 { return j.id } else { return nil } }
        XCTAssertEqual(claimed, Array(ids[1...3]), "claimed in queue order")
        for id in claimed {
            XCTAssertEqual(try state(id), "running")
            XCTAssertNotNil(try redis.command(["ZSCORE", schema.lease("q"), id.text]).string, "leased")
        }
        // More wanted than left: the one left is claimed, no more.
        let rest = try redis.run(CompleteAndFetchCall(completions: [], fetch: fetchCall, claimLimit: 5))
        XCTAssertEqual(rest.stored, [])
        guard rest.claimed.count == 1, case .job(let last) = rest.claimed[0] else { return XCTFail("one job left: \(rest.claimed)") }
        XCTAssertEqual(last.id, ids[4])
        XCTAssertEqual(try redis.command(["ZCARD", schema.lease("q")]).int, 4)
    }

    func testBatchedCompletionsArePublishedOnlyWhenSomeoneWaits() throws {
        let ids = try (0..<3).map { _ in try created(try enqueue()).id }
        try redis.command(["SET", schema.waiting(ids[1]), "1", "PX", "5000"])
        let listener = server.connection()
        XCTAssertEqual(try listener.command(["SUBSCRIBE", schema.finishedChannel]).array?.first?.string, "subscribe")
        for _ in 0..<3 { _ = try XCTUnwrap(try fetch()) }
        let out = try redis.run(CompleteAndFetchCall(
            completions: ids.map { CompleteCall(schema: schema, jobID: $0, workerID: "w1", attempt: 1, resultJSON: "null") },
            fetch: FetchCall(schema: schema, queue: "q", workerID: "w1", leaseMs: 30_000), claimLimit: 0))
        XCTAssertEqual(out.stored, [true, true, true])
        XCTAssertEqual(try redis.command(["ZCARD", schema.lease("q")]).int, 0, "every lease released")
        let message = try listener.blockingCommand(["PING"], blockingMs: 1000)
        XCTAssertEqual(message.array?.last?.string, ids[1].text, "only the waited-for job is published")
        let next = try listener.blockingCommand(["PING"], blockingMs: 1000)
        XCTAssertEqual(next.array?.first?.string, "pong", "and nothing else: \(next)")
    }
}
