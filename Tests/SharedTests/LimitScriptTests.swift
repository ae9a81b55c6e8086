import XCTest
@testable import Shared

/// The limit scripts (acquire, release, extend, define, delete, status) and
/// the queue scripts that park a refused job, claim it back and defer one.
final class LimitScriptTests: ScriptTestCase {
    private func acquire(_ id: JobID, limit: String = "l", cost: Int64 = 0, holdMs: Int64 = 30_000) throws -> AcquireLimitCall.Outcome {
        try redis.run(AcquireLimitCall(schema: schema, limit: limit, holder: h(id), cost: cost, holdMs: holdMs))
    }

    private func h(_ id: JobID) -> LimitHolder { LimitHolder(id, attempt: 1) }

    private func define(_ d: LimitDefinition, limit: String = "l") throws {
        _ = try redis.run(DefineLimitCall(schema: schema, limit: limit, definition: d))
    }

    private func status(_ limit: String = "l") throws -> LimitStatusCall.Status {
        try redis.run(LimitStatusCall(schema: schema, limit: limit))
    }

    private func ids(_ n: Int, queue: String = "q") -> [JobID] { (0..<n).map { _ in JobID.generate(queue: queue) } }

    func testConcurrencyRefusesTheFourthUntilARelease() throws {
        try define(LimitDefinition(concurrency: 3))
        let jobs = ids(4)
        for id in jobs.prefix(3) { XCTAssertEqual(try acquire(id), .granted) }
        guard case .refused("concurrency", let ms) = try acquire(jobs[3]) else { return XCTFail("not refused") }
        XCTAssertTrue((29_000...30_000).contains(ms), "at the latest when the oldest hold lapses: \(ms)")
        XCTAssertEqual(try status().waitingQueues, ["q"])
        // Asking again for a job that holds a slot (a lost reply) is granted, not counted twice.
        XCTAssertEqual(try acquire(jobs[0]), .granted)
        XCTAssertEqual(try status().running, 3)
        let wake = try redis.run(ReleaseLimitCall(schema: schema, limit: "l", holder: h(jobs[0])))
        XCTAssertEqual(wake, ["q"], "the waiting queue is woken")
        XCTAssertEqual(try status().waitingQueues, [])
        XCTAssertEqual(try acquire(jobs[3]), .granted)
    }

    func testTheHoldersKeyLastsAsLongAsItsLongestHold() throws {
        try define(LimitDefinition(concurrency: 10))
        let jobs = ids(3)
        let ttl = { try self.redis.command(["PTTL", self.schema.limitHolders("l")]).int ?? -3 }
        XCTAssertEqual(try acquire(jobs[0], holdMs: 60_000), .granted)
        let first = try ttl()
        XCTAssertTrue((50_000...60_000).contains(first), "a new key expires with its hold: \(first)")
        XCTAssertEqual(try acquire(jobs[1], holdMs: 1_000), .granted)
        XCTAssertGreaterThan(try ttl(), 50_000, "a shorter hold does not cut the longer one's time")
        XCTAssertEqual(try acquire(jobs[2], holdMs: 120_000), .granted)
        XCTAssertGreaterThan(try ttl(), 110_000, "a longer hold moves it later")
        // A key that lost its deadline (PERSIST by hand) gets one again.
        try redis.command(["PERSIST", schema.limitHolders("l")])
        XCTAssertEqual(try redis.run(ReleaseLimitCall(schema: schema, limit: "l", holder: h(jobs[0]), pauseMs: 0)), [String]())
        XCTAssertEqual(try ttl(), -1, "a release sets no deadline")
        XCTAssertEqual(try acquire(jobs[0], holdMs: 30_000), .granted)
        let again = try ttl()
        XCTAssertTrue((20_000...30_000).contains(again), "\(again)")
    }

    func testAHoldLapsesWithoutRenewalAndLastsWithIt() throws {
        try define(LimitDefinition(concurrency: 1))
        let jobs = ids(2)
        XCTAssertEqual(try acquire(jobs[0], holdMs: 1000), .granted)
        XCTAssertEqual(try redis.run(ExtendLimitHoldsCall(schema: schema, limit: "l", holdMs: 60_000, holders: [h(jobs[0])])), 1)
        guard case .refused(_, let ms) = try acquire(jobs[1]) else { return XCTFail("not refused") }
        XCTAssertGreaterThan(ms, 50_000, "renewed with the lease")
        // A crashed worker renews nothing: its hold lapses.
        try redis.command(["ZADD", schema.limitHolders("l"), "XX", "1", h(jobs[0]).member])
        XCTAssertEqual(try acquire(jobs[1]), .granted)
        XCTAssertEqual(try redis.run(ExtendLimitHoldsCall(schema: schema, limit: "l", holdMs: 60_000, holders: [h(jobs[0])])), 0,
                       "a lapsed hold is not taken back")
    }

    func testRateRefusesUntilTheWindowMoves() throws {
        try define(LimitDefinition(rateCount: 2, ratePeriodMs: 10_000))
        let jobs = ids(3)
        XCTAssertEqual(try acquire(jobs[0]), .granted)
        _ = try redis.run(ReleaseLimitCall(schema: schema, limit: "l", holder: h(jobs[0])))
        XCTAssertEqual(try acquire(jobs[1]), .granted)
        guard case .refused("rate", let ms) = try acquire(jobs[2]) else { return XCTFail("not refused") }
        XCTAssertTrue((9_000...10_000).contains(ms), "\(ms)")
        XCTAssertEqual(try status().startsInWindow, 2)
        // The first start leaves the window.
        let first = try redis.command(["ZRANGE", schema.limitStarts("l"), "0", "0"]).array?.first?.string ?? ""
        try redis.command(["ZADD", schema.limitStarts("l"), "XX", "1", first])
        XCTAssertEqual(try acquire(jobs[2]), .granted)
    }

    func testUnitsChargeTheCostAndSettleTheUsage() throws {
        try define(LimitDefinition(unitsPerMinute: 6_000_000))
        let jobs = ids(3)
        XCTAssertEqual(try acquire(jobs[0], cost: 5_000_000), .granted)
        guard case .refused("units", let ms) = try acquire(jobs[1], cost: 2_000_000) else { return XCTFail("not refused") }
        XCTAssertTrue((9_000...10_001).contains(ms), "the missing million refills in 10 s: \(ms)")
        // It used 1,000,000, not 5,000,000: four come back.
        _ = try redis.run(ReleaseLimitCall(schema: schema, limit: "l", holder: h(jobs[0]), extraUnits: -4_000_000))
        let left = try XCTUnwrap(try status().unitsAvailable)
        XCTAssertTrue((5_000_000...5_010_000).contains(left), "\(left)")
        XCTAssertEqual(try acquire(jobs[1], cost: 2_000_000), .granted)
        // A job costing more than a minute's budget runs on a full budget, never otherwise.
        XCTAssertNotEqual(try acquire(jobs[2], cost: 9_000_000), .granted)
    }

    func testAPauseRefusesEveryoneForItsLengthAndWakesNobody() throws {
        let jobs = ids(2)
        XCTAssertEqual(try acquire(jobs[0]), .granted, "an undefined limit only counts")
        XCTAssertEqual(try redis.run(ReleaseLimitCall(schema: schema, limit: "l", holder: h(jobs[0]), pauseMs: 30_000)), [])
        guard case .refused("paused", let ms) = try acquire(jobs[1]) else { return XCTFail("not refused") }
        XCTAssertTrue((29_000...30_000).contains(ms), "\(ms)")
        XCTAssertGreaterThan(try redis.command(["PTTL", schema.limit("l")]).int ?? -1, 0,
                             "the pause of an undefined limit expires with it")
        XCTAssertFalse(try status().defined)
    }

    func testDefineKeepsWhatWasSpentAndDeleteForgetsTheDefinition() throws {
        try define(LimitDefinition(unitsPerMinute: 1_000_000))
        XCTAssertEqual(try acquire(ids(1)[0], cost: 600_000), .granted)
        try define(LimitDefinition(concurrency: 2, unitsPerMinute: 500_000))
        let s = try status()
        XCTAssertEqual(s.definition, LimitDefinition(concurrency: 2, unitsPerMinute: 500_000))
        XCTAssertTrue((400_000...420_000).contains(s.unitsAvailable ?? -1), "\(String(describing: s.unitsAvailable))")
        XCTAssertEqual(s.running, 1)
        XCTAssertTrue(try redis.run(DeleteLimitCall(schema: schema, limit: "l")).existed)
        XCTAssertFalse(try redis.run(DeleteLimitCall(schema: schema, limit: "l")).existed)
        XCTAssertEqual(try status().running, 1, "running holds stay counted")
    }

    func testABatchRunsReleasesAndAcquiresInOrderAndWakesOnce() throws {
        try define(LimitDefinition(concurrency: 1))
        let jobs = ids(3)
        XCTAssertEqual(try acquire(jobs[0]), .granted)
        guard case .refused = try acquire(jobs[1]) else { return XCTFail("not refused") }
        let call = LimitBatchCall(schema: schema, limit: "l", operations: [
            .release(h(jobs[0]), extraUnits: 0, pauseMs: 0), .acquire(h(jobs[2]), cost: 0, holdMs: 30_000),
            .acquire(h(jobs[1]), cost: 0, holdMs: 30_000)])
        let (wake, outcomes) = try redis.run(call)
        XCTAssertEqual(wake, ["q"], "the release woke the waiting queue")
        XCTAssertNil(outcomes[0])
        XCTAssertEqual(outcomes[1], .granted, "the freed slot went to the next operation")
        guard case .refused("concurrency", _)? = outcomes[2] else { return XCTFail("\(outcomes)") }
        XCTAssertEqual(try status().running, 1)
    }

    func testAnUndoneAcquireGivesBackItsSlotStartAndCost() throws {
        try define(LimitDefinition(concurrency: 1, rateCount: 1, ratePeriodMs: 60_000, unitsPerMinute: 6_000_000))
        let jobs = ids(2)
        XCTAssertEqual(try acquire(jobs[0], cost: 1_000_000), .granted)
        _ = try redis.run(LimitBatchCall(schema: schema, limit: "l", operations: [.undo(h(jobs[0]), cost: 1_000_000)]))
        let s = try status()
        XCTAssertEqual(s.running, 0)
        XCTAssertEqual(s.startsInWindow, 0)
        XCTAssertGreaterThanOrEqual(s.unitsAvailable ?? 0, 5_999_000)
        XCTAssertEqual(try acquire(jobs[1], cost: 1_000_000), .granted, "the slot, the start and the budget came back")
    }

    func testALateReleaseOfAnEarlierAttemptFreesNothingAndSettlesNothing() throws {
        try define(LimitDefinition(concurrency: 1, unitsPerMinute: 6_000_000))
        let job = ids(1)[0]
        XCTAssertEqual(try redis.run(AcquireLimitCall(schema: schema, limit: "l", holder: LimitHolder(job, attempt: 2), cost: 0,
                                                      holdMs: 30_000)), .granted)
        _ = try redis.run(ReleaseLimitCall(schema: schema, limit: "l", holder: LimitHolder(job, attempt: 1), extraUnits: 5_000_000))
        let s = try status()
        XCTAssertEqual(s.running, 1, "attempt 2 still holds its slot")
        XCTAssertGreaterThanOrEqual(s.unitsAvailable ?? 0, 5_999_000, "nothing charged for a hold that was not there")
    }

    func testAParkedJobKeepsItsAttemptAndIsClaimedFromItsList() throws {
        let first = try created(try enqueue())
        let second = try created(try enqueue())
        let claimed = try XCTUnwrap(try fetch())
        XCTAssertEqual(claimed.id, first.id)
        XCTAssertTrue(try redis.run(ParkCall(schema: schema, jobID: first.id, workerID: "w1", attempt: 1, limit: "l", atHead: false)))
        let parked = try redis.command(["HMGET", schema.job(first.id), "state", "attempts", "worker"]).array?.map(\.string)
        XCTAssertEqual(parked, ["queued", "0", nil])
        XCTAssertEqual(try redis.command(["SMEMBERS", schema.limitedSet("q")]).array?.compactMap(\.string), ["l"])
        // A plain fetch takes the next pending job, not the parked one.
        XCTAssertEqual(try fetch()?.id, second.id)
        var call = FetchCall(schema: schema, queue: "q", workerID: "w2", leaseMs: 30_000)
        call.parkedLimit = "l"
        guard case .job(let again) = try redis.run(call) else { return XCTFail("parked job not claimed") }
        XCTAssertEqual(again.id, first.id)
        XCTAssertEqual(again.attempts, 1)
        XCTAssertEqual(try redis.command(["EXISTS", schema.limitedSet("q")]).int, 0, "an empty list leaves the set")
        XCTAssertFalse(try redis.run(ParkCall(schema: schema, jobID: first.id, workerID: "w1", attempt: 1, limit: "l", atHead: true)),
                       "another worker's job is not parked")
    }

    func testADeferredJobRunsAgainWithoutUsingAnAttempt() throws {
        let job = try created(try enqueue())
        _ = try fetch()
        XCTAssertEqual(try redis.run(DeferCall(schema: schema, jobID: job.id, workerID: "w1", attempt: 1, delayMs: 5000,
                                               errorJSON: Job.errorJSON(message: "429", attempt: 1))), .deferred)
        let f = try redis.command(["HMGET", schema.job(job.id), "state", "attempts"]).array?.map(\.string)
        XCTAssertEqual(f, ["scheduled", "0"])
        let due = try XCTUnwrap(try redis.command(["ZSCORE", schema.scheduled("q"), job.id.text]).string.flatMap(Double.init))
        XCTAssertGreaterThan(due, Double(Clock.nowMillis() + 4000))
        XCTAssertEqual(try redis.run(DeferCall(schema: schema, jobID: job.id, workerID: "w1", attempt: 1, delayMs: 5000,
                                               errorJSON: "{}")), .stale, "not held any more")
        // A job deferred its most times is not deferred again.
        try redis.command(["HSET", schema.job(job.id), "deferrals", String(DeferCall.maxDeferrals)])
        try makeDue(job.id)
        _ = try fetch()
        XCTAssertEqual(try redis.run(DeferCall(schema: schema, jobID: job.id, workerID: "w1", attempt: 1, delayMs: 5000,
                                               errorJSON: "{}")), .tooMany)
    }
}
