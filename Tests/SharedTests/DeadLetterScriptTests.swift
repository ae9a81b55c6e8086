import XCTest
@testable import Shared

/// The dead-letter scripts: listing pages, retry, purge.
final class DeadLetterScriptTests: ScriptTestCase {
    func testDeadListPagesNewestFirstWithoutGapsOrRepeats() throws {
        let ids = try makeDead(5)
        var seen: [JobID] = []
        var cursor = DeadListCall.Cursor.start
        var pages = 0
        while true {
            let page = try redis.run(DeadListCall(schema: schema, queue: "q", cursor: cursor, limit: 2))
            seen += page.jobs.map(\.id)
            pages += 1
            guard let next = page.next else { break }
            cursor = try XCTUnwrap(DeadListCall.Cursor(parsing: next.text))
        }
        XCTAssertEqual(Set(seen), Set(ids))
        XCTAssertEqual(seen.count, 5)
        XCTAssertEqual(pages, 3)
        let finished = try seen.map { try XCTUnwrap(Int64(try redis.command(["HGET", schema.job($0), "finished_at"]).string ?? "")) }
        XCTAssertEqual(finished, finished.sorted(by: >), "newest first")
    }

    func testDeadListSaysNoNextPageWhenTheLastPageIsExactlyFull() throws {
        _ = try makeDead(4)
        let first = try redis.run(DeadListCall(schema: schema, queue: "q", cursor: .start, limit: 2))
        let next = try XCTUnwrap(first.next, "a second page follows")
        let last = try redis.run(DeadListCall(schema: schema, queue: "q", cursor: next, limit: 2))
        XCTAssertEqual(last.jobs.count, 2)
        XCTAssertNil(last.next, "the last page is full, and says it is the last")
        XCTAssertNil(try redis.run(DeadListCall(schema: schema, queue: "q", cursor: .start, limit: 4)).next)
    }

    func testRetryDeadResetsAttemptsAndRefusesOthers() throws {
        let ids = try makeDead(3)
        let one = try redis.run(RetryDeadCall(schema: schema, queue: "q", ids: [ids[0]]))
        XCTAssertEqual(one, .init(retried: 1, refusedState: nil, examined: 1))
        XCTAssertEqual(try state(ids[0]), "queued")
        XCTAssertEqual(try redis.command(["HGET", schema.job(ids[0]), "attempts"]).int, 0)
        XCTAssertEqual(try redis.command(["TTL", schema.job(ids[0])]).int, -1, "a retried job no longer expires")
        let again = try redis.run(RetryDeadCall(schema: schema, queue: "q", ids: [ids[0]]))
        XCTAssertEqual(again.refusedState, "queued")
        let all = try redis.run(RetryDeadCall(schema: schema, queue: "q"))
        XCTAssertEqual(all.retried, 2)
        XCTAssertEqual(try redis.command(["ZCARD", schema.dead("q")]).int, 0)
    }

    func testPurgeDeadDeletesTheJobs() throws {
        let ids = try makeDead(2)
        XCTAssertEqual(try redis.run(PurgeDeadCall(schema: schema, queue: "q")), 2)
        for id in ids { XCTAssertEqual(try redis.command(["EXISTS", schema.job(id)]).int, 0) }
        XCTAssertEqual(try redis.command(["ZCARD", schema.dead("q")]).int, 0)
    }
}
