import XCTest
@testable import Shared

/// Groups take turns within a queue and priority (GroupLua): enqueue puts a
/// job in its group's line, fetch serves one job per turn token.
final class GroupScriptTests: ScriptTestCase {
    @discardableResult
    private func enqueue(group: String?, priority: Priority = .normal) throws -> Job {
        var job = Job(id: JobID.generate(queue: "q"), type: "noop")
        job.group = group
        job.priority = priority
        return try created(try redis.run(EnqueueCall(schema: schema, queue: "q", items: [.init(job: job)], pendingLimit: 0)))
    }

    private func stats() throws -> QueueStatsCall.Stats { try redis.run(QueueStatsCall(schema: schema, queue: "q")) }

    func testGroupsTakeTurnsWithEachOtherAndWithUngroupedJobs() throws {
        let a = try (0..<3).map { _ in try enqueue(group: "A") }
        let b = try enqueue(group: "B")
        let plain = try enqueue(group: nil)
        XCTAssertEqual(try stats().pendingTotal, 5)
        XCTAssertEqual(try redis.command(["LLEN", schema.pending("q", .normal)]).int, 3, "one token per group, one id")
        let order = try (0..<5).map { _ in try XCTUnwrap(try fetch()).id }
        XCTAssertEqual(order, [a[0].id, b.id, plain.id, a[1].id, a[2].id])
        XCTAssertNil(try fetch())
        XCTAssertEqual(try stats().pendingTotal, 0)
        XCTAssertEqual(try redis.command(["EXISTS", schema.groups("q")]).int, 0)
    }

    func testACallTakingSeveralTurnsKeepsEachPrioritysCount() throws {
        let a = try (0..<3).map { _ in try enqueue(group: "A") }
        let b = try (0..<2).map { _ in try enqueue(group: "B") }
        let h = try (0..<2).map { _ in try enqueue(group: "H", priority: .high) }
        XCTAssertEqual(try stats().pendingTotal, 7)
        // One call takes five turns: H's two (high first), then A, B and A again.
        let out = try redis.run(CompleteAndFetchCall(completions: [], fetch: FetchCall(schema: schema, queue: "q", workerID: "w1",
                                                                                       leaseMs: 30_000), claimLimit: 5))
        let claimed = out.claimed.compactMap { if case .job(let j) = $0 { return j.id } else { return nil } }
        XCTAssertEqual(claimed, [h[0].id, h[1].id, a[0].id, b[0].id, a[1].id])
        let counts = try stats()
        XCTAssertEqual(counts.pending[.high], 0)
        XCTAssertEqual(counts.pending[.normal], 2)
        XCTAssertEqual(try (0..<2).map { _ in try XCTUnwrap(try fetch()).id }, [b[1].id, a[2].id])
        XCTAssertEqual(try stats().pendingTotal, 0)
    }

    func testARetriedJobWaitsInItsGroupsLineAgain() throws {
        let a = try (0..<3).map { _ in try enqueue(group: "A") }
        let b = try (0..<2).map { _ in try enqueue(group: "B") }
        XCTAssertEqual(try fetch()?.id, a[0].id)
        _ = try redis.run(FailCall(schema: schema, jobID: a[0].id, workerID: "w1", attempt: 1, errorJSON: "{}", retryDelayMs: 0,
                                   deadTTLSeconds: 60, deadMax: 10))
        // Promoted at the next fetch to the back of its group's line, not
        // ahead of the other group's jobs in the pending list.
        let order = try (0..<5).map { _ in try XCTUnwrap(try fetch()).id }
        XCTAssertEqual(order, [b[0].id, a[1].id, b[1].id, a[2].id, a[0].id])
        XCTAssertEqual(try stats().pendingTotal, 0)
        XCTAssertEqual(try redis.command(["EXISTS", schema.groups("q")]).int, 0)
    }

    func testCancellingAGroupsLastJobTakesItsTurnAlong() throws {
        let a = try enqueue(group: "A", priority: .high)
        let plain = try enqueue(group: nil, priority: .high)
        XCTAssertEqual(try redis.run(CancelCall(schema: schema, jobID: a.id)), .cancelled(previous: "queued"))
        XCTAssertEqual(try stats().pending[.high], 1)
        XCTAssertEqual(try redis.command(["LLEN", schema.pending("q", .high)]).int, 1, "no empty turn left behind")
        // The group comes back with one turn, not two.
        let b = try enqueue(group: "A", priority: .high)
        XCTAssertEqual(try redis.command(["LRANGE", schema.pending("q", .high), "0", "-1"]).array?.compactMap(\.string),
                       [plain.id.text, "@A"])
        XCTAssertEqual(try fetch()?.id, plain.id)
        XCTAssertEqual(try fetch()?.id, b.id)
        XCTAssertEqual(try stats().pendingTotal, 0)
        XCTAssertEqual(try redis.command(["HGET", schema.stats("q"), "missing"]).int ?? 0, 0, "not counted as missing")
    }

    private func listing() throws -> [String: Int64] {
        var out: [String: Int64] = [:]
        var cursor: UInt64 = 0
        repeat {
            let page = try redis.run(ListGroupsCall(schema: schema, queue: "q", cursor: cursor, count: 1))
            for g in page.groups { out[g.name] = g.waiting }
            guard let next = page.nextCursor else { break }
            cursor = try XCTUnwrap(UInt64(next))
        } while true
        return out
    }

    func testTheListingCountsEachGroupsJobsOverItsPriorities() throws {
        let a = try (0..<3).map { _ in try enqueue(group: "A") }
        let high = try enqueue(group: "A", priority: .high)
        try enqueue(group: "B", priority: .low)
        XCTAssertEqual(try listing(), ["A": 4, "B": 1])
        // The hash changes when a line opens or empties, not per job.
        XCTAssertEqual(try redis.command(["HGET", schema.groups("q"), "A"]).string, "2", "A's two lines")
        XCTAssertEqual(try fetch()?.id, high.id)
        XCTAssertEqual(try redis.command(["HGET", schema.groups("q"), "A"]).string, "1")
        XCTAssertEqual(try redis.run(CancelCall(schema: schema, jobID: a[2].id)), .cancelled(previous: "queued"))
        XCTAssertEqual(try listing(), ["A": 2, "B": 1])
        // A field left by a version that counted jobs, with no line: not listed.
        _ = try redis.command(["HSET", schema.groups("q"), "gone", "5"])
        XCTAssertEqual(try listing(), ["A": 2, "B": 1])
        for _ in 0..<3 { XCTAssertNotNil(try fetch()) }
        XCTAssertEqual(try listing(), [:])
        XCTAssertEqual(try redis.command(["HKEYS", schema.groups("q")]).array?.compactMap(\.string), ["gone"])
        XCTAssertEqual(try stats().pendingTotal, 0)
    }

    func testAPurgeStoppedHalfWayKeepsListingAGroupThatStillHasJobs() throws {
        // An empty turn (its line gone: evicted, or left by an older
        // version's cancel) ahead of the group's line at another priority.
        _ = try redis.command(["RPUSH", schema.pending("q", .high), "@g"])
        _ = try redis.command(["HSET", schema.stats("q"), "group_extra:2", "-1"])  // a token, no job
        for _ in 0..<3 { try enqueue(group: "g") }
        XCTAssertEqual(try redis.run(DeleteQueueCall(schema: schema, queue: "q", purgeBatch: 1)), .purged(1))
        XCTAssertEqual(try listing(), ["g": 2])
        XCTAssertEqual(try stats().pendingTotal, 2)
    }

    func testThePendingLimitCountsGroupedJobs() throws {
        for _ in 0..<3 { try enqueue(group: "A") }
        var job = Job(id: JobID.generate(queue: "q"), type: "noop")
        job.group = "B"
        let outcome = try redis.run(EnqueueCall(schema: schema, queue: "q", items: [.init(job: job)], pendingLimit: 3))
        guard case .queueFull(let pending) = outcome else { return XCTFail("\(outcome)") }
        XCTAssertEqual(pending, 3)
    }

    func testPurgingAQueueDropsItsGroupedJobs() throws {
        for i in 0..<7 { try enqueue(group: "g\(i % 3)") }
        var rounds = 0
        while case .purged = try redis.run(DeleteQueueCall(schema: schema, queue: "q", purgeBatch: 2)) { rounds += 1 }
        XCTAssertGreaterThan(rounds, 2)
        XCTAssertEqual(try redis.command(["KEYS", "t:{q}:*"]).array?.count ?? -1, 0)
    }
}
