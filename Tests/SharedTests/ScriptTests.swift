import XCTest
@testable import Shared

/// Every Lua script against a real redis-server: the state changes a user
/// relies on (order, leases, retries, recovery, idempotency, limits).
final class ScriptTests: XCTestCase {
    var server: TestRedis!
    var redis: RedisConnection!
    let schema = KeySchema(prefix: "t")

    override func setUpWithError() throws {
        server = try TestRedis()
        redis = server.connection()
    }

    override func tearDown() {
        redis?.disconnect()
        server?.stop()
    }

    // MARK: helpers

    @discardableResult
    func enqueue(_ type: String = "noop", queue: String = "q", priority: Priority = .normal, maxAttempts: Int = 5,
                 delayMs: Int64 = 0, idempotencyKey: String? = nil, limit: Int64 = 0) throws -> EnqueueCall.Outcome {
        var job = Job(id: JobID.generate(queue: queue), type: type)
        job.priority = priority
        job.options.maxAttempts = maxAttempts
        job.idempotencyKey = idempotencyKey
        return try redis.run(EnqueueCall(schema: schema, queue: queue, items: [.init(job: job, delayMs: delayMs)], pendingLimit: limit))
    }

    func created(_ outcome: EnqueueCall.Outcome) throws -> Job {
        guard case .enqueued(let entries) = outcome, case .created(let job) = entries[0] else {
            XCTFail("expected a created job, got \(outcome)")
            throw XCTSkip("no job")
        }
        return job
    }

    func fetch(_ queue: String = "q", worker: String = "w1", leaseMs: Int64 = 30_000) throws -> Job? {
        if case .job(let job) = try redis.run(FetchCall(schema: schema, queue: queue, workerID: worker, leaseMs: leaseMs)) { return job }
        return nil
    }

    func state(_ id: JobID) throws -> String? { try redis.command(["HGET", schema.job(id), "state"]).string }

    // MARK: tests

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

    func testPrioritiesThenFIFO() throws {
        let low = try created(try enqueue(priority: .low))
        let normal1 = try created(try enqueue(priority: .normal))
        let normal2 = try created(try enqueue(priority: .normal))
        let urgent = try created(try enqueue(priority: .urgent))
        let high = try created(try enqueue(priority: .high))
        let order = try (0..<5).map { _ in try XCTUnwrap(try fetch()).id }
        XCTAssertEqual(order, [urgent.id, high.id, normal1.id, normal2.id, low.id])
    }

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
            usleep(2000)
        }
        XCTAssertEqual(try redis.command(["ZCARD", schema.dead("q")]).int, 2)
        XCTAssertEqual(try redis.command(["EXISTS", schema.job(ids[0])]).int, 0, "the oldest dead job is dropped whole")
        XCTAssertEqual(try state(ids[2]), "dead")
    }

    func testRecoverRequeuesExpiredLeaseAndDropsTheLateResult() throws {
        let job = try created(try enqueue())
        _ = try fetch(worker: "crashed", leaseMs: 1)
        usleep(5000)
        let recovered = try redis.run(RecoverCall(schema: schema, queue: "q", deadTTLSeconds: 60, deadMax: 10))
        XCTAssertEqual(recovered, [.init(id: job.id.text, dead: false, attempt: 1, worker: "crashed")])
        XCTAssertEqual(try state(job.id), "queued")
        XCTAssertEqual(try redis.run(RecoverCall(schema: schema, queue: "q", deadTTLSeconds: 60, deadMax: 10)), [], "idempotent")

        let rerun = try XCTUnwrap(try fetch(worker: "alive"))
        XCTAssertEqual(rerun.attempts, 2)
        // The frozen worker wakes up and reports: its result must be dropped.
        XCTAssertFalse(try redis.run(CompleteCall(schema: schema, jobID: job.id, workerID: "crashed", attempt: 1, resultJSON: "1")))
        XCTAssertEqual(try redis.run(FailCall(schema: schema, jobID: job.id, workerID: "crashed", attempt: 1, errorJSON: "{}",
                                              retryDelayMs: 0, deadTTLSeconds: 60, deadMax: 10)), .stale)
        XCTAssertTrue(try redis.run(CompleteCall(schema: schema, jobID: job.id, workerID: "alive", attempt: 2, resultJSON: "2")))
        XCTAssertEqual(try redis.command(["HGET", schema.job(job.id), "result"]).string, "2")
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

    func testRecoverBuriesWhenOutOfAttempts() throws {
        let job = try created(try enqueue(maxAttempts: 1))
        _ = try fetch(leaseMs: 1)
        usleep(5000)
        let recovered = try redis.run(RecoverCall(schema: schema, queue: "q", deadTTLSeconds: 60, deadMax: 10))
        XCTAssertEqual(recovered.first?.dead, true)
        XCTAssertEqual(try state(job.id), "dead")
        let error = try JSONParser.parse(try redis.command(["HGET", schema.job(job.id), "error"]).string ?? "")
        XCTAssertTrue(error["message"]?.stringValue?.contains("lease expired") == true)
    }

    func testExtendLeasesReportsLostJobs() throws {
        let job = try created(try enqueue())
        _ = try fetch(leaseMs: 1000)
        let before = try redis.command(["ZSCORE", schema.lease("q"), job.id.text]).int ?? 0
        let lost = try redis.run(ExtendLeasesCall(schema: schema, queue: "q", workerID: "w1", leaseMs: 60_000,
                                                  jobs: [(job.id, 1), (JobID.generate(queue: "q"), 1)]))
        XCTAssertEqual(lost.count, 1, "the job it does not hold is reported lost")
        let after = try XCTUnwrap(Int64(try redis.command(["ZSCORE", schema.lease("q"), job.id.text]).string ?? ""))
        XCTAssertGreaterThan(after, before + 50_000)
        let wrongWorker = try redis.run(ExtendLeasesCall(schema: schema, queue: "q", workerID: "w2", leaseMs: 60_000, jobs: [(job.id, 1)]))
        XCTAssertEqual(wrongWorker, [.init(id: job.id.text, state: "running")])
    }

    func testGiveBackReturnsTheJobWithoutCountingTheAttempt() throws {
        let a = try created(try enqueue())
        let b = try created(try enqueue())
        _ = try fetch()
        let given = try redis.run(GiveBackCall(schema: schema, queue: "q", workerID: "w1", jobs: [(a.id, 1)]))
        XCTAssertEqual(given, [a.id.text])
        XCTAssertEqual(try state(a.id), "queued")
        XCTAssertEqual(try redis.command(["HGET", schema.job(a.id), "attempts"]).int, 0)
        XCTAssertEqual(try XCTUnwrap(try fetch()).id, a.id, "a given-back job runs next, ahead of older pending ones")
        XCTAssertEqual(try XCTUnwrap(try fetch()).id, b.id)
    }

    /// A fetch of loop 0 of worker w1, sent with `token`: the call a test
    /// "loses" by ignoring its reply, as a timed-out worker would.
    func loopFetch(_ token: String) -> FetchCall {
        var call = FetchCall(schema: schema, queue: "q", workerID: "w1", leaseMs: 30_000, loop: "0")
        call.token = token
        return call
    }

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

    func testGivenBackJobsKeepTheirOrder() throws {
        let ids = try (0..<4).map { _ in try created(try enqueue()).id }
        let lost = loopFetch("1")
        _ = try redis.run(CompleteAndFetchCall(completions: [], fetch: lost, claimLimit: 3))
        XCTAssertEqual(try redis.run(SettleCall(lost: lost)), .ran(stored: [], givenBack: ids[0..<3].map(\.text)))
        XCTAssertEqual(try (0..<4).map { _ in try XCTUnwrap(try fetch()).id }, ids, "first in, first out still")
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
        XCTAssertEqual(try redis.command(["EXISTS", empty.receiptKey]).int, 0)
        XCTAssertEqual(try redis.run(SettleCall(lost: empty)), .notRun)
        _ = try created(try enqueue())
        let claiming = loopFetch("2")
        _ = try redis.run(claiming)
        let ttl = try XCTUnwrap(try redis.command(["PTTL", claiming.receiptKey]).int)
        XCTAssertTrue((1...30_000).contains(ttl), "the receipt is kept one lease, not forever: \(ttl)")
    }

    func testDelayedJobIsScheduledThenPromoted() throws {
        let job = try created(try enqueue(delayMs: 150))
        XCTAssertEqual(job.state, .scheduled)
        XCTAssertEqual(try state(job.id), "scheduled")
        XCTAssertNil(try fetch())
        usleep(200_000)
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

    func testScriptsReloadAfterFlush() throws {
        try enqueue()
        try redis.command(["SCRIPT", "FLUSH"])
        XCTAssertNotNil(try fetch(), "NOSCRIPT falls back to EVAL")
    }

    // MARK: lifecycle scripts

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
        usleep(80_000)
        XCTAssertNil(try fetch())
        XCTAssertEqual(try redis.command(["ZCARD", schema.scheduled("q")]).int, 0)
    }

    func testProgressOnlyWhileHoldingTheLease() throws {
        let job = try created(try enqueue())
        _ = try fetch()
        XCTAssertTrue(try redis.run(ProgressCall(schema: schema, jobID: job.id, workerID: "w1", attempt: 1, progressJSON: #"{"current":1}"#)))
        XCTAssertEqual(try redis.command(["HGET", schema.job(job.id), "progress"]).string, #"{"current":1}"#)
        XCTAssertFalse(try redis.run(ProgressCall(schema: schema, jobID: job.id, workerID: "other", attempt: 1, progressJSON: "{}")))
    }

    func makeDead(_ count: Int) throws -> [JobID] {
        try (0..<count).map { _ in
            let job = try created(try enqueue(maxAttempts: 1))
            _ = try fetch()
            _ = try redis.run(FailCall(schema: schema, jobID: job.id, workerID: "w1", attempt: 1, errorJSON: "{}",
                                       retryDelayMs: 0, deadTTLSeconds: 600, deadMax: 100))
            return job.id
        }
    }

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

    func testAJobQueuedAgainHasNoTraceOfTheLostRun() throws {
        let given = try created(try enqueue())
        let recovered = try created(try enqueue())
        _ = try fetch(worker: "w1")
        _ = try fetch(worker: "crashed", leaseMs: 1)
        for id in [given.id, recovered.id] {
            try redis.command(["HSET", schema.job(id), "progress", #"{"current":1}"#])
        }
        XCTAssertEqual(try redis.run(GiveBackCall(schema: schema, queue: "q", workerID: "w1", jobs: [(given.id, 1)])), [given.id.text])
        usleep(5000)
        XCTAssertEqual(try redis.run(RecoverCall(schema: schema, queue: "q", deadTTLSeconds: 60, deadMax: 10)).map(\.id), [recovered.id.text])
        for id in [given.id, recovered.id] {
            let fields = try redis.command(["HMGET", schema.job(id), "state", "started_at", "worker", "progress"]).array ?? []
            XCTAssertEqual(fields, [.bulk("queued"), .null, .null, .null], "\(id)")
        }
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

    func testIdsWithoutAJobHashAreDroppedAndCounted() throws {
        let gone = try created(try enqueue())
        let later = try created(try enqueue(delayMs: 1))
        let kept = try created(try enqueue())
        try redis.command(["DEL", schema.job(gone.id), schema.job(later.id)])
        usleep(3000)
        XCTAssertEqual(try XCTUnwrap(try fetch()).id, kept.id)
        XCTAssertNil(try fetch())
        XCTAssertEqual(try redis.command(["HGET", schema.stats("q"), "missing"]).int, 2)
        XCTAssertEqual(try redis.command(["ZCARD", schema.scheduled("q")]).int, 0, "no id stays behind for a job that is gone")
        XCTAssertEqual(try redis.run(QueueStatsCall(schema: schema, queue: "q")).missing, 2)
    }

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
        // A stale completion stores nothing but still fetches (here: nothing left).
        let after = try redis.run(CompleteAndFetchCall(
            complete: CompleteCall(schema: schema, jobID: first.id, workerID: "w1", attempt: 1, resultJSON: "0"),
            fetch: FetchCall(schema: schema, queue: "q", workerID: "w1", leaseMs: 30_000)))
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
