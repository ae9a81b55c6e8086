import XCTest
@testable import Shared

/// Receipts and the settle script: a claiming call whose reply was lost.
final class SettleScriptTests: ScriptTestCase {
    func testSettleGivesBackWhatALostFetchClaimed() throws {
        let a = try created(try enqueue(maxAttempts: 1))
        let b = try created(try enqueue())
        let lost = loopFetch("7")
        _ = try redis.run(lost)
        XCTAssertEqual(try state(a.id), "running")

        XCTAssertEqual(try redis.run(SettleCall(lost: lost)), .ran(stored: [], givenBack: [a.id.text]))
        XCTAssertEqual(try state(a.id), "queued")
        XCTAssertEqual(try redis.command(["HGET", schema.job(a.id), "attempts"]).int, 0, "the attempt never ran")
        XCTAssertNil(try redis.command(["ZSCORE", schema.lease("q"), a.id.text]).string, "no longer leased")
        XCTAssertEqual(try redis.run(SettleCall(lost: lost)), .ran(stored: [], givenBack: []), "settling twice gives back nothing more")
        XCTAssertEqual(try redis.run(SettleCall(lost: loopFetch("8"))), .notRun, "a token the receipt does not name never ran")

        let again = try XCTUnwrap(try fetch())
        XCTAssertEqual(again.id, a.id, "back at the head of its queue")
        XCTAssertEqual(again.attempts, 1, "its one allowed attempt is still there")
        XCTAssertEqual(try XCTUnwrap(try fetch()).id, b.id)
    }

    func testSettleOfALostCompleteAndFetchReturnsItsStoredFlags() throws {
        let a = try created(try enqueue())
        let b = try created(try enqueue())
        _ = try redis.run(loopFetch("1"))
        let fetch = loopFetch("2")
        _ = try redis.run(CompleteAndFetchCall(
            completions: [CompleteCall(schema: schema, jobID: a.id, workerID: "w1", attempt: 1, resultJSON: "1"),
                          CompleteCall(schema: schema, jobID: b.id, workerID: "w1", attempt: 1, resultJSON: "2")],
            fetch: fetch, claimLimit: 2))
        XCTAssertEqual(try state(a.id), "succeeded")
        XCTAssertEqual(try state(b.id), "running", "claimed by the lost call")

        XCTAssertEqual(try redis.run(SettleCall(lost: fetch)), .ran(stored: [true, false], givenBack: [b.id.text]))
        XCTAssertEqual(try state(a.id), "succeeded", "a stored completion stays")
        XCTAssertEqual(try state(b.id), "queued")
        XCTAssertEqual(try redis.run(SettleCall(lost: loopFetch("1"))), .notRun, "the receipt holds the last call only")
    }

    func testACallSettledAsNotRunChangesNothingIfItArrivesLate() throws {
        let a = try created(try enqueue())
        _ = try redis.run(loopFetch("1"))
        let late = loopFetch("2")
        XCTAssertEqual(try redis.run(SettleCall(lost: late)), .notRun)
        XCTAssertThrowsError(try redis.run(late), "a delayed packet of the given-up call") { error in
            guard case RedisError.server(let message) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(message.contains("FENCED"), message)
        }
        XCTAssertEqual(try redis.command(["ZCARD", schema.lease("q")]).int, 1, "only the first call's claim")
        XCTAssertEqual(try redis.run(SettleCall(lost: late)), .notRun, "still not run")
        _ = try created(try enqueue())
        guard case .job = try redis.run(loopFetch("3")) else { return XCTFail("the loop's next call runs") }
        XCTAssertEqual(try state(a.id), "running")
    }

    func testSettleLeavesAJobThatWasRecoveredAndClaimedAgain() throws {
        let a = try created(try enqueue())
        let lost = loopFetch("1")
        _ = try redis.run(lost)
        // Its lease ran out early (as if the receipt outlived it), and recovery took it back.
        try redis.command(["ZADD", schema.lease("q"), "1", a.id.text])
        XCTAssertEqual(try redis.run(RecoverCall(schema: schema, queue: "q", deadTTLSeconds: 60, deadMax: 10)).map(\.id), [a.id.text])
        let rerun = try XCTUnwrap(try fetch())
        XCTAssertEqual(rerun.attempts, 2)

        XCTAssertEqual(try redis.run(SettleCall(lost: lost)), .ran(stored: [], givenBack: []))
        XCTAssertEqual(try state(a.id), "running", "the second attempt is not disturbed")
    }

    func testAFetchThatFindsNothingLeavesNoReceipt() throws {
        let empty = loopFetch("1")
        _ = try redis.run(empty)
        XCTAssertEqual(try redis.command(["EXISTS", empty.receiptKey!]).int, 0)
        XCTAssertEqual(try redis.run(SettleCall(lost: empty)), .notRun)
        _ = try created(try enqueue())
        let claiming = loopFetch("2")
        _ = try redis.run(claiming)
        let ttl = try XCTUnwrap(try redis.command(["PTTL", claiming.receiptKey!]).int)
        XCTAssertTrue((1...30_000).contains(ttl), "the receipt is kept one lease, not forever: \(ttl)")
    }
}
