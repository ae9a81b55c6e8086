import XCTest
@testable import Shared
#if canImport(Glibc)
import Glibc
#endif

/// The fetch an idle worker loop sends behind its wait for a wake token
/// (RedisConnection.blockingPipeline, FetchLoop.waitForWork): Redis holds it
/// until the BLPOP is answered and runs it at once, so the job whose token
/// ended the wait is claimed without a round trip of its own.
final class FetchBehindWaitTests: ScriptTestCase {
    /// What the waiting thread got back.
    private final class Outcome: @unchecked Sendable {  // written by the waiter before `done` opens, read after
        var replies: (RedisReply, RedisReply)?
        var error: Error?
        var endedAt: Int64 = 0
    }

    private func fetchCommand(token: String) -> (FetchCall, [String]) {
        var call = FetchCall(schema: schema, queue: "q", workerID: "w1", leaseMs: 30_000, loop: "0")
        call.token = token
        return (call, ["EVALSHA", call.script.sha1, String(call.keys.count)] + call.keys + call.args)
    }

    private func wait(then command: [String], blockSeconds: Int) -> (BackgroundThread, Outcome) {
        let outcome = Outcome()
        let waiter = server.connection()
        let wake = schema.wake("q")
        let thread = BackgroundThread(name: "waiter") {
            do {
                outcome.replies = try waiter.blockingPipeline(["BLPOP", wake, String(blockSeconds)], then: command,
                                                              blockingMs: blockSeconds * 1000)
            } catch {
                outcome.error = error
            }
            outcome.endedAt = Clock.monotonicMillis()
            waiter.disconnect()
        }
        return (thread, outcome)
    }

    func testTheFetchRunsWhenTheWaitEndsAndClaimsTheJobWhoseTokenEndedIt() throws {
        _ = try redis.command(["SCRIPT", "LOAD", FetchCall.script.source])
        let (call, evalsha) = fetchCommand(token: "1")
        let (thread, outcome) = wait(then: evalsha, blockSeconds: 5)
        // The queue was empty while the waiter blocked: a fetch run before the
        // wait ended would have found nothing.
        let blockedBy = Clock.monotonicMillis() + 3000
        while try redis.command(["CLIENT", "LIST", "TYPE", "normal"]).string?.contains("cmd=blpop") != true {
            guard Clock.monotonicMillis() < blockedBy else { return XCTFail("the waiter never blocked in BLPOP") }
            usleep(10_000)
        }
        let enqueuedAt = Clock.monotonicMillis()
        let job = try created(try enqueue("echo"))
        // (A waiter that did not come back is left alone: reading its outcome would race it.)
        guard thread.join(timeoutMs: 4000) else { return XCTFail("the waiter did not come back") }
        XCTAssertNil(outcome.error)
        let (wake, fetched) = try XCTUnwrap(outcome.replies)
        XCTAssertEqual(wake.array?.first?.string, schema.wake("q"), "the enqueue's token ended the wait")
        guard case .job(let claimed) = try call.decode(fetched) else { return XCTFail("nothing claimed: \(fetched)") }
        XCTAssertEqual(claimed.id, job.id)
        XCTAssertEqual(try state(job.id), "running")
        XCTAssertNotNil(try redis.command(["ZSCORE", schema.lease("q"), job.id.text]).string, "claimed under a lease")
        XCTAssertLessThan(outcome.endedAt - enqueuedAt, 2000, "answered at the token, not at the wait's end (5 s)")
    }

    /// After a Redis restart or SCRIPT FLUSH the fetch behind the wait fails
    /// with NOSCRIPT and changes nothing; the worker then fetches as usual.
    func testAnUnknownScriptBehindTheWaitChangesNothing() throws {
        let job = try created(try enqueue("echo"))
        _ = try redis.command(["SCRIPT", "FLUSH"])
        let (_, evalsha) = fetchCommand(token: "1")
        let (thread, outcome) = wait(then: evalsha, blockSeconds: 5)
        guard thread.join(timeoutMs: 4000) else { return XCTFail("the waiter did not come back") }
        let (wake, fetched) = try XCTUnwrap(outcome.replies)
        XCTAssertNotNil(wake.array, "the token was there")
        guard case .error(let message) = fetched else { return XCTFail("expected NOSCRIPT, got \(fetched)") }
        XCTAssertTrue(message.hasPrefix("NOSCRIPT"), message)
        XCTAssertEqual(try state(job.id), "queued")
        XCTAssertEqual(try redis.command(["LLEN", schema.pending("q", .normal)]).int, 1)
        XCTAssertEqual(try redis.command(["ZCARD", schema.lease("q")]).int, 0)
    }
}
