import XCTest
@testable import Shared

/// A complete-and-fetch call that settles its limits itself (one Redis): it
/// gives back the recorded runs' slots, takes the claimed jobs' slots, and
/// parks the jobs refused, in the same call.
final class CallLimitsScriptTests: ScriptTestCase {
    private func enqueue(limit: String? = nil, type: String = "noop", cost: Int64? = nil, group: String? = nil) throws -> JobID {
        var job = Job(id: JobID.generate(queue: "q"), type: type)
        job.limit = limit
        job.cost = cost
        job.group = group
        return try created(try redis.run(EnqueueCall(schema: schema, queue: "q", items: [.init(job: job, delayMs: 0)], pendingLimit: 0))).id
    }

    private func holders(_ limit: String) throws -> [String] {
        try redis.command(["ZRANGE", schema.limitHolders(limit), "0", "-1"]).array?.compactMap(\.string) ?? []
    }

    private func define(_ limit: String, _ d: LimitDefinition) throws {
        _ = try redis.run(DefineLimitCall(schema: schema, limit: limit, definition: d))
    }

    /// Records `done` (which held a slot of `limits[0]`) and claims `claim` jobs, settling `limits` in the call.
    private func completeAndFetch(_ done: Job, limits: [String], byType: [(type: String, index: Int)] = [],
                                  groupCaps: Bool = false, claim: Int = 1, extraUnits: Int64 = 0) throws -> CompleteAndFetchCall.Output {
        let call = CallLimits(schema: schema, names: limits, byType: byType, groupCaps: groupCaps,
                              releases: [(index: 0, extraUnits: extraUnits)])
        return try redis.run(CompleteAndFetchCall(
            completions: [CompleteCall(schema: schema, jobID: done.id, workerID: "w1", attempt: done.attempts, resultJSON: "1")],
            fetch: FetchCall(schema: schema, queue: "q", workerID: "w1", leaseMs: 30_000), claimLimit: claim, limits: call))
    }

    func testTheRunsSlotComesBackAndTheNextJobTakesOne() throws {
        try define("l", LimitDefinition(concurrency: 1, unitsPerMinute: 1_000_000))
        let first = try enqueue(limit: "l", cost: 100)
        let second = try enqueue(limit: "l", cost: 300)
        let running = try XCTUnwrap(try fetch())
        XCTAssertEqual(try redis.run(AcquireLimitCall(schema: schema, limit: "l", holder: LimitHolder(first, attempt: 1), cost: 100,
                                                      holdMs: 30_000)), .granted)
        let out = try completeAndFetch(running, limits: ["l"], extraUnits: -50)
        XCTAssertEqual(out.stored, [true])
        guard case .job(let next)? = out.claimed.first else { return XCTFail("\(out.claimed)") }
        XCTAssertEqual(next.id, second)
        XCTAssertEqual(out.limits?.admissions, [.granted(limit: "l", cost: 300)], "the slot freed by the run went to the next job")
        XCTAssertEqual(try holders("l"), ["\(second.text)@1"])
        let status = try redis.run(LimitStatusCall(schema: schema, limit: "l"))
        // 1,000,000 - 100 + 50 (the run used 50) - 300.
        XCTAssertTrue((999_650...999_700).contains(status.unitsAvailable ?? 0), "\(String(describing: status.unitsAvailable))")
    }

    func testARefusedJobIsParkedInTheSameCallAndTheOthersRun() throws {
        try define("l", LimitDefinition(concurrency: 1))
        let first = try enqueue(limit: "l")
        let limited = try enqueue(limit: "l")
        let free = try enqueue()
        let running = try XCTUnwrap(try fetch())
        XCTAssertEqual(running.id, first)
        // Another worker's job holds the only slot.
        let other = JobID.generate(queue: "q")
        XCTAssertEqual(try redis.run(AcquireLimitCall(schema: schema, limit: "l", holder: LimitHolder(other, attempt: 1), cost: 0,
                                                      holdMs: 30_000)), .granted)
        let out = try completeAndFetch(running, limits: ["l"], claim: 2)
        guard out.claimed.count == 2, case .job(let a) = out.claimed[0], case .job(let b) = out.claimed[1] else {
            return XCTFail("\(out.claimed)")
        }
        XCTAssertEqual([a.id, b.id], [limited, free])
        guard case .parked("l", "concurrency", let ms)? = out.limits?.admissions.first else {
            return XCTFail("\(String(describing: out.limits))")
        }
        XCTAssertTrue((29_000...30_000).contains(ms), "\(ms)")
        XCTAssertEqual(out.limits?.admissions.last, .leftToWorker, "a job under no limit is the worker's to admit")
        let parked = try redis.command(["HMGET", schema.job(limited), "state", "attempts", "parked"]).array?.map(\.string)
        XCTAssertEqual(parked, ["queued", "0", "l"], "parked, its attempt not counted")
        XCTAssertEqual(try redis.command(["LRANGE", schema.limited("q", limit: "l"), "0", "-1"]).array?.compactMap(\.string), [limited.text])
        XCTAssertEqual(try redis.command(["ZSCORE", schema.lease("q"), limited.text]).string, nil, "no longer leased")
        XCTAssertEqual(try redis.run(LimitStatusCall(schema: schema, limit: "l")).waitingQueues, ["q"])
        XCTAssertEqual(try state(free), "running")
    }

    func testAReleaseWakesTheQueuesWaitingForTheLimit() throws {
        try define("l", LimitDefinition(concurrency: 1))
        let first = try enqueue(limit: "l")
        let running = try XCTUnwrap(try fetch())
        XCTAssertEqual(try redis.run(AcquireLimitCall(schema: schema, limit: "l", holder: LimitHolder(first, attempt: 1), cost: 0,
                                                      holdMs: 30_000)), .granted)
        // A job of another queue waits for the slot.
        guard case .refused = try redis.run(AcquireLimitCall(schema: schema, limit: "l", holder: LimitHolder(JobID.generate(queue: "other"),
                                                             attempt: 1), cost: 0, holdMs: 30_000)) else { return XCTFail("not refused") }
        let out = try completeAndFetch(running, limits: ["l"])
        XCTAssertEqual(out.limits?.wakes.map(\.limit), ["l"])
        XCTAssertEqual(out.limits?.wakes.first?.queues, ["other"])
        XCTAssertEqual(try holders("l"), [])
    }

    func testJobsTheWorkerMustDecideAreLeftToIt() throws {
        try define("l", LimitDefinition(concurrency: 10))
        let first = try enqueue(limit: "l")
        _ = try enqueue(limit: "elsewhere")
        _ = try enqueue(limit: "l", group: "tenant")
        _ = try enqueue(type: "summarize")
        let damaged = try enqueue(limit: "l")
        // A cost no enqueue writes: the worker finds the hash damaged, so the call charges nothing.
        try redis.command(["HSET", schema.job(damaged), "cost", "99999999999999999999"])
        let running = try XCTUnwrap(try fetch())
        XCTAssertEqual(running.id, first)
        let out = try completeAndFetch(running, limits: ["l"], byType: [(type: "summarize", index: 0)], groupCaps: true, claim: 4)
        XCTAssertEqual(out.limits?.admissions, [.leftToWorker, .leftToWorker, .granted(limit: "l", cost: 0), .leftToWorker],
                       "an undeclared limit, a group that may have a cap; a type mapped to a declared limit is taken; a damaged cost is not")
        XCTAssertEqual(try holders("l").count, 1)
    }

    /// Another worker holds one slot and the run held one; the call gives the
    /// run's back and claims three jobs of the limit.
    private func claimThreeBesideAnotherHolder(concurrency: Int64) throws -> (CompleteAndFetchCall.Output, JobID) {
        try define("l", LimitDefinition(concurrency: concurrency))
        let first = try enqueue(limit: "l")
        for _ in 0..<3 { _ = try enqueue(limit: "l") }
        let running = try XCTUnwrap(try fetch())
        let other = JobID.generate(queue: "other")
        for (id, holder) in [(first, LimitHolder(first, attempt: 1)), (other, LimitHolder(other, attempt: 1))] {
            XCTAssertEqual(try redis.run(AcquireLimitCall(schema: schema, limit: "l", holder: holder, cost: 0, holdMs: 30_000)), .granted, "\(id)")
        }
        return (try completeAndFetch(running, limits: ["l"], claim: 3), other)
    }

    func testClaimsThatAllFitTakeTheirSlotsAndNoMore() throws {
        // 1 other + 3 claimed = 4: every claim fits (their holds go in one ZADD).
        let (out, other) = try claimThreeBesideAnotherHolder(concurrency: 4)
        let claimed = out.claimed.compactMap { if case .job(let j) = $0 { return j } else { return nil } }
        XCTAssertEqual(claimed.count, 3)
        XCTAssertEqual(out.limits?.admissions, Array(repeating: .granted(limit: "l", cost: 0), count: 3))
        XCTAssertEqual(Set(try holders("l")), Set([other.text + "@1"] + claimed.map { "\($0.id.text)@1" }),
                       "the run's slot given back, one per claim")
        // Each hold lapses with its job's lease.
        let score = try XCTUnwrap(Double(try XCTUnwrap(redis.command(["ZSCORE", schema.limitHolders("l"), "\(claimed[2].id.text)@1"]).string)))
        let nowMs = Date().timeIntervalSince1970 * 1000
        XCTAssertTrue((nowMs + 25_000...nowMs + 31_000).contains(score), "\(score - nowMs)")
        let status = try redis.run(LimitStatusCall(schema: schema, limit: "l"))
        XCTAssertEqual(status.waitingQueues, [])
    }

    func testClaimsBeyondTheLimitAreParkedOneByOne() throws {
        // 1 other + 3 claimed = 4 > 3: the first two run, the third is parked.
        let (out, other) = try claimThreeBesideAnotherHolder(concurrency: 3)
        guard let admissions = out.limits?.admissions, admissions.count == 3 else { return XCTFail("\(String(describing: out.limits))") }
        XCTAssertEqual(Array(admissions.prefix(2)), [.granted(limit: "l", cost: 0), .granted(limit: "l", cost: 0)])
        guard case .parked("l", "concurrency", _) = admissions[2] else { return XCTFail("\(admissions)") }
        XCTAssertEqual(try holders("l").count, 3)
        XCTAssertTrue(try holders("l").contains(other.text + "@1"))
    }

    func testEachRunGivesBackTheSlotOfItsOwnLimit() throws {
        // Three runs: one of limit a, one of no limit, one of limit b that
        // reports usage (its budget is charged the difference).
        try define("a", LimitDefinition(concurrency: 5))
        try define("b", LimitDefinition(unitsPerMinute: 1_000_000))
        let ofA = try enqueue(limit: "a")
        let ofNone = try enqueue()
        let ofB = try enqueue(limit: "b", cost: 100)
        let runs = try (0..<3).map { _ in try XCTUnwrap(try fetch()) }
        XCTAssertEqual(runs.map(\.id), [ofA, ofNone, ofB])
        for (limit, id, cost) in [("a", ofA, Int64(0)), ("b", ofB, 100)] {
            XCTAssertEqual(try redis.run(AcquireLimitCall(schema: schema, limit: limit, holder: LimitHolder(id, attempt: 1),
                                                          cost: cost, holdMs: 30_000)), .granted)
        }
        let call = CallLimits(schema: schema, names: ["a", "b"], byType: [], groupCaps: false,
                              releases: [(index: 0, extraUnits: 0), nil, (index: 1, extraUnits: 400)])
        let out = try redis.run(CompleteAndFetchCall(
            completions: runs.map { CompleteCall(schema: schema, jobID: $0.id, workerID: "w1", attempt: 1, resultJSON: "1") },
            fetch: FetchCall(schema: schema, queue: "q", workerID: "w1", leaseMs: 30_000), claimLimit: 0, limits: call))
        XCTAssertEqual(out.stored, [true, true, true])
        XCTAssertEqual(try holders("a"), [])
        XCTAssertEqual(try holders("b"), [])
        let status = try redis.run(LimitStatusCall(schema: schema, limit: "b"))
        // 1,000,000 - 100 declared - 400 more reported, refilled by about 17 a millisecond since.
        XCTAssertTrue((999_500...999_800).contains(status.unitsAvailable ?? 0), "\(String(describing: status.unitsAvailable))")
    }

    func testAPlainCallTakesNoLimitsPart() throws {
        _ = try enqueue(limit: "l")
        _ = try enqueue(limit: "l")
        let running = try XCTUnwrap(try fetch())
        let out = try redis.run(CompleteAndFetchCall(
            complete: CompleteCall(schema: schema, jobID: running.id, workerID: "w1", attempt: 1, resultJSON: "1"),
            fetch: FetchCall(schema: schema, queue: "q", workerID: "w1", leaseMs: 30_000)))
        XCTAssertNil(out.limits)
        guard case .job? = out.claimed.first else { return XCTFail("\(out.claimed)") }
        XCTAssertEqual(try holders("l"), [], "on Cluster the worker takes the slot itself")
    }
}
